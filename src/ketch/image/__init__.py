"""Images: the content store, snapshots, and the unpacker that joins them (see docs/architecture.md).

``content`` knows blobs and nothing of snapshots; ``snapshots`` know directories and mounts and nothing of
blobs; ``unpack`` (layer tar to snapshot) and ``diff`` (snapshot to layer tar) work between them.
"""
