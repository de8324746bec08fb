"""The engine: containers as records and a lifecycle, put together from runtime, image and spec.

``model`` holds what a container is (config, state), ``lifecycle`` the moves between states, ``names`` and
``common.ids`` how containers are named, and ``db`` where all of it is kept (ketch.db, the only module that
opens it). The verbs (create, start, stop, ...) and the daemon come later (docs/architecture.md).
"""
