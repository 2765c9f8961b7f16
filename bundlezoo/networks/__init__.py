"""Networks shared between the bundles of this collection."""
