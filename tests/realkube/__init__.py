"""tests/realkube is a package so that pytest gives it a Package node.

Without one a ``scope="package"`` fixture is session-scoped: the ``control_plane`` of conftest.py would
stay up, idle, after the directory's last test until its worker's last test. Its modules import
``tests.realkube.controlplane`` by that name.
"""
