"""The serving side: the only package that speaks DICOM (pynetdicom, pydicom)."""
