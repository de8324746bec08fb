"""The per-container monitor (shim): holds a container's stdio, writes its log, keeps its exit status.

It execs the OCI runtime binary it is given and never imports ketch.runtime. See docs/shim.md.
"""
