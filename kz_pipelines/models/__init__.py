"""Downstream models on the parcel tensor: features, crop type (and, later, the event products)."""
