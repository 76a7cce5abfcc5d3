"""storescpd: a DICOM Storage SCP daemon that behaves like DCMTK's storescp."""

__version__ = "0.1.0"
