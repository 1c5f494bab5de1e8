"""The hostile corpus's end-to-end tests use the e2e fixtures: a store per test holding
busybox:latest, and the real CLI on it. (Unit-level hostile tests need none of them.)"""

from tests.e2e.conftest import builder, busybox_rootfs, busybox_store

__all__ = ["builder", "busybox_rootfs", "busybox_store"]
