"""The OCI vocabulary: digests, media types, descriptors, manifests, configs, references."""
