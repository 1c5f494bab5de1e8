"""The OCI distribution API: pull, push, auth, mirrors, a build cache shared through a registry."""
