"""The ketch command: docker-compatible flags and output."""
