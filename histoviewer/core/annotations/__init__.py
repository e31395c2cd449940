"""Annotation model and file formats (GeoJSON as QuPath writes it, CAMELYON/ASAP XML)."""
