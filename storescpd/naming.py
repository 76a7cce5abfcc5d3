"""File names for received instances: SOP class prefixes, UID checks, the three name schemes.

Reproduces SPEC §6.1 and Appendix A (DCMTK's SOP class → "modality" prefix table) and enforces
DESIGN §5: no byte from a peer may choose a path, so instance UIDs must match the UID grammar
and every name must stay inside its directory. Pure: stdlib only, no I/O, no clock (callers pass
the time in).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime

UNKNOWN_PREFIX = "UNKNOWN"
UNKNOWN_LOG_CODE = "OT"
MAX_UID_LENGTH = 64

_UID_GRAMMAR = re.compile(r"[0-9]+(\.[0-9]+)*")
_FORBIDDEN_IN_NAME = ("/", "\\", "\0")


@dataclass(frozen=True, slots=True)
class SopClass:
    """One row of SPEC Appendix A."""

    uid: str
    name: str
    """DCMTK's symbolic name (``dcmuid.h``), for log lines and greps."""
    prefix: str
    """File-name prefix; case-sensitive and not unique."""
    default_accepted: bool
    """Whether storescp accepts this class without an association profile (``-xf``)."""


SOP_CLASSES: tuple[SopClass, ...] = (
    SopClass("1.2.840.10008.5.1.1.27", "RETIRED_StoredPrintStorage", "SP", True),
    SopClass("1.2.840.10008.5.1.1.29", "RETIRED_HardcopyGrayscaleImageStorage", "HG", True),
    SopClass("1.2.840.10008.5.1.1.30", "RETIRED_HardcopyColorImageStorage", "HC", True),
    SopClass("1.2.840.10008.5.1.4.1.1.1", "ComputedRadiographyImageStorage", "CR", True),
    SopClass("1.2.840.10008.5.1.4.1.1.1.1", "DigitalXRayImageStorageForPresentation", "DX", True),
    SopClass("1.2.840.10008.5.1.4.1.1.1.1.1", "DigitalXRayImageStorageForProcessing", "DP", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.1.2",
        "DigitalMammographyXRayImageStorageForPresentation",
        "DXm",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.1.2.1",
        "DigitalMammographyXRayImageStorageForProcessing",
        "DPm",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.1.3",
        "DigitalIntraOralXRayImageStorageForPresentation",
        "DXo",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.1.3.1",
        "DigitalIntraOralXRayImageStorageForProcessing",
        "DPo",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.2", "CTImageStorage", "CT", True),
    SopClass("1.2.840.10008.5.1.4.1.1.2.1", "EnhancedCTImageStorage", "CTe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.2.2", "LegacyConvertedEnhancedCTImageStorage", "CTl", True),
    SopClass("1.2.840.10008.5.1.4.1.1.3", "RETIRED_UltrasoundMultiframeImageStorage", "USf", True),
    SopClass("1.2.840.10008.5.1.4.1.1.3.1", "UltrasoundMultiframeImageStorage", "USm", True),
    SopClass("1.2.840.10008.5.1.4.1.1.4", "MRImageStorage", "MR", True),
    SopClass("1.2.840.10008.5.1.4.1.1.4.1", "EnhancedMRImageStorage", "MRe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.4.2", "MRSpectroscopyStorage", "MRs", True),
    SopClass("1.2.840.10008.5.1.4.1.1.4.3", "EnhancedMRColorImageStorage", "MRc", True),
    SopClass("1.2.840.10008.5.1.4.1.1.4.4", "LegacyConvertedEnhancedMRImageStorage", "MRl", True),
    SopClass("1.2.840.10008.5.1.4.1.1.5", "RETIRED_NuclearMedicineImageStorage", "NMr", True),
    SopClass("1.2.840.10008.5.1.4.1.1.6", "RETIRED_UltrasoundImageStorage", "USr", True),
    SopClass("1.2.840.10008.5.1.4.1.1.6.1", "UltrasoundImageStorage", "US", True),
    SopClass("1.2.840.10008.5.1.4.1.1.6.2", "EnhancedUSVolumeStorage", "USe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.7", "SecondaryCaptureImageStorage", "SC", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.7.1",
        "MultiframeSingleBitSecondaryCaptureImageStorage",
        "SCs",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.7.2",
        "MultiframeGrayscaleByteSecondaryCaptureImageStorage",
        "SCb",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.7.3",
        "MultiframeGrayscaleWordSecondaryCaptureImageStorage",
        "SCw",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.7.4",
        "MultiframeTrueColorSecondaryCaptureImageStorage",
        "SCc",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.8", "RETIRED_StandaloneOverlayStorage", "OV", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9", "RETIRED_StandaloneCurveStorage", "CV", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.1", "DRAFT_WaveformStorage", "WV_d", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.1.1", "TwelveLeadECGWaveformStorage", "TLE", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.1.2", "GeneralECGWaveformStorage", "ECG", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.1.3", "AmbulatoryECGWaveformStorage", "ECA", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.2.1", "HemodynamicWaveformStorage", "WVh", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.9.3.1", "CardiacElectrophysiologyWaveformStorage", "WVc", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.9.4.1", "BasicVoiceAudioWaveformStorage", "AUV", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.4.2", "GeneralAudioWaveformStorage", "AUG", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.5.1", "ArterialPulseWaveformStorage", "WVa", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.6.1", "RespiratoryWaveformStorage", "WVr", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.9.6.2", "MultichannelRespiratoryWaveformStorage", "WVm", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.9.7.1",
        "RoutineScalpElectroencephalogramWaveformStorage",
        "EEG",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.9.7.2", "ElectromyogramWaveformStorage", "EMG", True),
    SopClass("1.2.840.10008.5.1.4.1.1.9.7.3", "ElectrooculogramWaveformStorage", "EOG", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.9.7.4", "SleepElectroencephalogramWaveformStorage", "WVs", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.9.8.1", "BodyPositionWaveformStorage", "WVb", True),
    SopClass("1.2.840.10008.5.1.4.1.1.10", "RETIRED_StandaloneModalityLUTStorage", "ML", True),
    SopClass("1.2.840.10008.5.1.4.1.1.11", "RETIRED_StandaloneVOILUTStorage", "VO", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.1", "GrayscaleSoftcopyPresentationStateStorage", "PSg", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.11.2", "ColorSoftcopyPresentationStateStorage", "PSc", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.3", "PseudoColorSoftcopyPresentationStateStorage", "PSp", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.4", "BlendingSoftcopyPresentationStateStorage", "PSb", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.5",
        "XAXRFGrayscaleSoftcopyPresentationStateStorage",
        "PSx",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.6",
        "GrayscalePlanarMPRVolumetricPresentationStateStorage",
        "VPg",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.7",
        "CompositingPlanarMPRVolumetricPresentationStateStorage",
        "VPc",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.8", "AdvancedBlendingPresentationStateStorage", "PSa", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.9",
        "VolumeRenderingVolumetricPresentationStateStorage",
        "VPv",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.10",
        "SegmentedVolumeRenderingVolumetricPresentationStateStorage",
        "VPs",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.11.11",
        "MultipleVolumeRenderingVolumetricPresentationStateStorage",
        "VPm",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.12.1", "XRayAngiographicImageStorage", "XA", True),
    SopClass("1.2.840.10008.5.1.4.1.1.12.1.1", "EnhancedXAImageStorage", "XAe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.12.2", "XRayRadiofluoroscopicImageStorage", "RF", True),
    SopClass("1.2.840.10008.5.1.4.1.1.12.2.1", "EnhancedXRFImageStorage", "RFe", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.12.3", "RETIRED_XRayAngiographicBiPlaneImageStorage", "XB", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.13.1.1", "XRay3DAngiographicImageStorage", "XA3", True),
    SopClass("1.2.840.10008.5.1.4.1.1.13.1.2", "XRay3DCraniofacialImageStorage", "XC3", True),
    SopClass("1.2.840.10008.5.1.4.1.1.13.1.3", "BreastTomosynthesisImageStorage", "BT", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.13.1.4",
        "BreastProjectionXRayImageStorageForPresentation",
        "BX",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.13.1.5",
        "BreastProjectionXRayImageStorageForProcessing",
        "BP",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.14.1",
        "IntravascularOpticalCoherenceTomographyImageStorageForPresentation",
        "OCt",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.14.2",
        "IntravascularOpticalCoherenceTomographyImageStorageForProcessing",
        "OCp",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.20", "NuclearMedicineImageStorage", "NM", True),
    SopClass("1.2.840.10008.5.1.4.1.1.30", "ParametricMapStorage", "PM", True),
    SopClass("1.2.840.10008.5.1.4.1.1.66", "RawDataStorage", "RAW", True),
    SopClass("1.2.840.10008.5.1.4.1.1.66.1", "SpatialRegistrationStorage", "RGs", True),
    SopClass("1.2.840.10008.5.1.4.1.1.66.2", "SpatialFiducialsStorage", "FID", True),
    SopClass("1.2.840.10008.5.1.4.1.1.66.3", "DeformableSpatialRegistrationStorage", "RGd", True),
    SopClass("1.2.840.10008.5.1.4.1.1.66.4", "SegmentationStorage", "SG", True),
    SopClass("1.2.840.10008.5.1.4.1.1.66.5", "SurfaceSegmentationStorage", "SGs", True),
    SopClass("1.2.840.10008.5.1.4.1.1.66.6", "TractographyResultsStorage", "TR", True),
    SopClass("1.2.840.10008.5.1.4.1.1.67", "RealWorldValueMappingStorage", "RWM", True),
    SopClass("1.2.840.10008.5.1.4.1.1.68.1", "SurfaceScanMeshStorage", "SSm", True),
    SopClass("1.2.840.10008.5.1.4.1.1.68.2", "SurfaceScanPointCloudStorage", "SSp", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1", "RETIRED_VLImageStorage", "VLr", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.1", "VLEndoscopicImageStorage", "VLe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.1.1", "VideoEndoscopicImageStorage", "VVe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.2", "VLMicroscopicImageStorage", "VLm", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.2.1", "VideoMicroscopicImageStorage", "VVm", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.77.1.3", "VLSlideCoordinatesMicroscopicImageStorage", "VLs", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.4", "VLPhotographicImageStorage", "VLp", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.4.1", "VideoPhotographicImageStorage", "VVp", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.77.1.5.1", "OphthalmicPhotography8BitImageStorage", "OPb", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.77.1.5.2", "OphthalmicPhotography16BitImageStorage", "OPw", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.5.3", "StereometricRelationshipStorage", "OPr", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.5.4", "OphthalmicTomographyImageStorage", "OPt", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.77.1.5.5",
        "WideFieldOphthalmicPhotographyStereographicProjectionImageStorage",
        "OWs",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.77.1.5.6",
        "WideFieldOphthalmicPhotography3DCoordinatesImageStorage",
        "OW3",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.77.1.5.7",
        "OphthalmicOpticalCoherenceTomographyEnFaceImageStorage",
        "OCe",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.77.1.5.8",
        "OphthalmicOpticalCoherenceTomographyBscanVolumeAnalysisStorage",
        "OCb",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.6", "VLWholeSlideMicroscopyImageStorage", "VLw", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.1.7", "DermoscopicPhotographyImageStorage", "VLd", True),
    SopClass("1.2.840.10008.5.1.4.1.1.77.2", "RETIRED_VLMultiframeImageStorage", "VMr", True),
    SopClass("1.2.840.10008.5.1.4.1.1.78.1", "LensometryMeasurementsStorage", "OPl", True),
    SopClass("1.2.840.10008.5.1.4.1.1.78.2", "AutorefractionMeasurementsStorage", "OPa", True),
    SopClass("1.2.840.10008.5.1.4.1.1.78.3", "KeratometryMeasurementsStorage", "OPk", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.78.4", "SubjectiveRefractionMeasurementsStorage", "OPs", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.78.5", "VisualAcuityMeasurementsStorage", "OPv", True),
    SopClass("1.2.840.10008.5.1.4.1.1.78.6", "SpectaclePrescriptionReportStorage", "SRs", True),
    SopClass("1.2.840.10008.5.1.4.1.1.78.7", "OphthalmicAxialMeasurementsStorage", "OPx", True),
    SopClass("1.2.840.10008.5.1.4.1.1.78.8", "IntraocularLensCalculationsStorage", "OPc", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.79.1", "MacularGridThicknessAndVolumeReportStorage", "SRg", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.80.1",
        "OphthalmicVisualFieldStaticPerimetryMeasurementsStorage",
        "OPp",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.81.1", "OphthalmicThicknessMapStorage", "OPm", True),
    SopClass("1.2.840.10008.5.1.4.1.1.82.1", "CornealTopographyMapStorage", "CM", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.1", "DRAFT_SRTextStorage", "SR_t", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.2", "DRAFT_SRAudioStorage", "SR_a", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.3", "DRAFT_SRDetailStorage", "SR_d", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.4", "DRAFT_SRComprehensiveStorage", "SR_c", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.11", "BasicTextSRStorage", "SRt", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.22", "EnhancedSRStorage", "SRe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.33", "ComprehensiveSRStorage", "SRc", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.34", "Comprehensive3DSRStorage", "SR3", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.35", "ExtensibleSRStorage", "SRx", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.40", "ProcedureLogStorage", "SRp", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.50", "MammographyCADSRStorage", "SRm", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.59", "KeyObjectSelectionDocumentStorage", "KO", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.65", "ChestCADSRStorage", "SRh", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.67", "XRayRadiationDoseSRStorage", "SRd", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.88.68", "RadiopharmaceuticalRadiationDoseSRStorage", "SRr", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.88.69", "ColonCADSRStorage", "SRo", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.70", "ImplantationPlanSRDocumentStorage", "SRi", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.71", "AcquisitionContextSRStorage", "SRa", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.72", "SimplifiedAdultEchoSRStorage", "SRu", True),
    SopClass("1.2.840.10008.5.1.4.1.1.88.73", "PatientRadiationDoseSRStorage", "SRq", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.88.74", "PlannedImagingAgentAdministrationSRStorage", "SRj", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.88.75", "PerformedImagingAgentAdministrationSRStorage", "SRi", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.88.76", "EnhancedXRayRadiationDoseSRStorage", "SRde", True),
    SopClass("1.2.840.10008.5.1.4.1.1.90.1", "ContentAssessmentResultsStorage", "AS", True),
    SopClass("1.2.840.10008.5.1.4.1.1.91.1", "MicroscopyBulkSimpleAnnotationsStorage", "MAs", True),
    SopClass("1.2.840.10008.5.1.4.1.1.104.1", "EncapsulatedPDFStorage", "PDF", True),
    SopClass("1.2.840.10008.5.1.4.1.1.104.2", "EncapsulatedCDAStorage", "CDA", True),
    SopClass("1.2.840.10008.5.1.4.1.1.104.3", "EncapsulatedSTLStorage", "STL", True),
    SopClass("1.2.840.10008.5.1.4.1.1.104.4", "EncapsulatedOBJStorage", "OBJ", True),
    SopClass("1.2.840.10008.5.1.4.1.1.104.5", "EncapsulatedMTLStorage", "MTL", True),
    SopClass("1.2.840.10008.5.1.4.1.1.128", "PositronEmissionTomographyImageStorage", "PI", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.128.1", "LegacyConvertedEnhancedPETImageStorage", "PIl", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.129", "RETIRED_StandalonePETCurveStorage", "PC", True),
    SopClass("1.2.840.10008.5.1.4.1.1.130", "EnhancedPETImageStorage", "PIe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.131", "BasicStructuredDisplayStorage", "SD", True),
    SopClass("1.2.840.10008.5.1.4.1.1.200.1", "CTDefinedProcedureProtocolStorage", "PPcd", False),
    SopClass("1.2.840.10008.5.1.4.1.1.200.2", "CTPerformedProcedureProtocolStorage", "PPcp", True),
    SopClass("1.2.840.10008.5.1.4.1.1.200.3", "ProtocolApprovalStorage", "PA", False),
    SopClass("1.2.840.10008.5.1.4.1.1.200.7", "XADefinedProcedureProtocolStorage", "PPxd", False),
    SopClass("1.2.840.10008.5.1.4.1.1.200.8", "XAPerformedProcedureProtocolStorage", "PPxp", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.1", "RTImageStorage", "RI", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.2", "RTDoseStorage", "RD", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.3", "RTStructureSetStorage", "RS", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.4", "RTBeamsTreatmentRecordStorage", "RTb", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.5", "RTPlanStorage", "RP", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.6", "RTBrachyTreatmentRecordStorage", "RTr", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.7", "RTTreatmentSummaryRecordStorage", "RTs", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.8", "RTIonPlanStorage", "RPi", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.9", "RTIonBeamsTreatmentRecordStorage", "RTi", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.10", "RTPhysicianIntentStorage", "RIp", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.11", "RTSegmentAnnotationStorage", "RAs", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.12", "RTRadiationSetStorage", "RSe", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.13", "CArmPhotonElectronRadiationStorage", "Rca", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.14", "TomotherapeuticRadiationStorage", "Rto", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.15", "RoboticArmRadiationStorage", "Rra", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.16", "RTRadiationRecordSetStorage", "RSr", True),
    SopClass("1.2.840.10008.5.1.4.1.1.481.17", "RTRadiationSalvageRecordStorage", "RRs", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.481.18", "TomotherapeuticRadiationRecordStorage", "RRt", True
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.481.19", "CArmPhotonElectronRadiationRecordStorage", "RRc", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.481.20", "RoboticRadiationRecordStorage", "RRr", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.481.21", "RTRadiationSetDeliveryInstructionStorage", "RSd", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.481.22", "RTTreatmentPreparationStorage", "RTp", True),
    SopClass("1.2.840.10008.5.1.4.1.1.501.1", "DICOS_CTImageStorage", "CTs", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.501.2.1",
        "DICOS_DigitalXRayImageStorageForPresentation",
        "DXs",
        True,
    ),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.501.2.2", "DICOS_DigitalXRayImageStorageForProcessing", "DPs", True
    ),
    SopClass("1.2.840.10008.5.1.4.1.1.501.3", "DICOS_ThreatDetectionReportStorage", "TDR", True),
    SopClass("1.2.840.10008.5.1.4.1.1.501.4", "DICOS_2DAITStorage", "AI2", True),
    SopClass("1.2.840.10008.5.1.4.1.1.501.5", "DICOS_3DAITStorage", "AI3", True),
    SopClass("1.2.840.10008.5.1.4.1.1.501.6", "DICOS_QuadrupoleResonanceStorage", "QR", True),
    SopClass("1.2.840.10008.5.1.4.1.1.601.1", "DICONDE_EddyCurrentImageStorage", "EC", True),
    SopClass(
        "1.2.840.10008.5.1.4.1.1.601.2", "DICONDE_EddyCurrentMultiframeImageStorage", "ECm", True
    ),
    SopClass("1.2.840.10008.5.1.4.34.1", "DRAFT_RTBeamsDeliveryInstructionStorage", "RB_d", True),
    SopClass("1.2.840.10008.5.1.4.34.7", "RTBeamsDeliveryInstructionStorage", "RTd", True),
    SopClass(
        "1.2.840.10008.5.1.4.34.10",
        "RTBrachyApplicationSetupDeliveryInstructionStorage",
        "RTa",
        True,
    ),
    SopClass("1.2.840.10008.5.1.4.38.1", "HangingProtocolStorage", "HP", False),
    SopClass("1.2.840.10008.5.1.4.39.1", "ColorPaletteStorage", "CP", False),
    SopClass("1.2.840.10008.5.1.4.43.1", "GenericImplantTemplateStorage", "IT", False),
    SopClass("1.2.840.10008.5.1.4.44.1", "ImplantAssemblyTemplateStorage", "ITa", False),
    SopClass("1.2.840.10008.5.1.4.45.1", "ImplantTemplateGroupStorage", "ITg", False),
)

DEFAULT_STORAGE_CLASSES: tuple[str, ...] = tuple(
    row.uid for row in SOP_CLASSES if row.default_accepted
)

_PREFIX_BY_UID: dict[str, str] = {row.uid: row.prefix for row in SOP_CLASSES}


def prefix_for(sop_class_uid: str) -> str:
    """The file-name prefix of a SOP class (``CT``, ``SRd`` ...), or ``UNKNOWN``."""
    return _PREFIX_BY_UID.get(sop_class_uid, UNKNOWN_PREFIX)


def log_code_for(sop_class_uid: str) -> str:
    """The code shown in ``Received Store Request (MsgID n, <code>)``: the prefix, or ``OT``."""
    return _PREFIX_BY_UID.get(sop_class_uid, UNKNOWN_LOG_CODE)


def is_valid_uid(value: str) -> bool:
    """True when ``value`` is safe inside a file name: 1–64 characters, digits and single dots.

    Leading zeros in a component break the DICOM grammar but real devices send them, and they
    are harmless in a name, so they pass.
    """
    return 0 < len(value) <= MAX_UID_LENGTH and _UID_GRAMMAR.fullmatch(value) is not None


def instance_file_name(prefix: str, sop_instance_uid: str, extension: str) -> str:
    """storescp's default name ``<prefix>.<SOP Instance UID><ext>`` (``-uf``).

    Raises
    ------
    ValueError
        When the UID is not a valid UID (the caller answers with a failure status rather than
        writing a name chosen by the peer), or the result would contain a path separator.
    """
    if not is_valid_uid(sop_instance_uid):
        raise ValueError(f"not a valid UID: {sop_instance_uid!r}")
    return _checked(f"{prefix}.{sop_instance_uid}{extension}")


def unique_file_name(prefix: str, new_uid: str, extension: str) -> str:
    """The ``+uf`` name ``<prefix>.X.<freshly generated UID><ext>``.

    Raises
    ------
    ValueError
        As :func:`instance_file_name`.
    """
    if not is_valid_uid(new_uid):
        raise ValueError(f"not a valid UID: {new_uid!r}")
    return _checked(f"{prefix}.X.{new_uid}{extension}")


class TimeNamer:
    """Names for ``-tn``: ``<YYYYMMDDHHMMSSmmm>.<prefix><ext>``, with a serial on collision.

    The second file that would get the same name within one millisecond is called
    ``<stamp>_0000.<prefix><ext>``, the next ``_0001`` and so on (more digits past 9999).
    Serials restart when the millisecond changes and on :meth:`reset` (a new study directory).

    DCMTK compares only with the previous name, so within one millisecond CT, MR, CT would
    overwrite the first CT file; here every name of the current millisecond is remembered,
    which gives the same names as DCMTK whenever DCMTK does not overwrite.
    """

    def __init__(self) -> None:
        self._stamp = ""
        self._next_serial: dict[str, int] = {}

    def name(self, prefix: str, extension: str, now: datetime) -> str:
        """The name for a file received at ``now`` (local time, as DCMTK uses)."""
        stamp = _millisecond_stamp(now)
        if stamp != self._stamp:
            self._stamp = stamp
            self._next_serial.clear()
        suffix = f".{prefix}{extension}"
        serial = self._next_serial.get(suffix)
        self._next_serial[suffix] = 0 if serial is None else serial + 1
        if serial is None:
            return _checked(f"{stamp}{suffix}")
        return _checked(f"{stamp}_{serial:04d}{suffix}")

    def reset(self) -> None:
        """Forget earlier names: files now go to a fresh directory and cannot collide."""
        self._stamp = ""
        self._next_serial.clear()


def _millisecond_stamp(now: datetime) -> str:
    # Not strftime: "%Y" does not pad years before 1000 on glibc, and DCMTK always uses 4 digits.
    return (
        f"{now.year:04d}{now.month:02d}{now.day:02d}"
        f"{now.hour:02d}{now.minute:02d}{now.second:02d}{now.microsecond // 1000:03d}"
    )


SHORT_UNKNOWN_PREFIX = "XX"  # dcmrecv +fsu's prefix for a class without one
SHORT_NAME_ATTEMPTS = 1024  # dcmrecv +fsu draws at most this many names


def short_unique_name(prefix: str, started: int, draw: int, extension: str) -> str:
    """dcmrecv's ``+fsu`` name ``<prefix>_<8 hex digits><8 hex digits><ext>`` (SPEC §12.2).

    ``started`` is the server's start time in seconds since the epoch, ``draw`` a random
    32-bit number; the caller draws again while a file of the name exists. ``prefix`` is the
    SOP class prefix, ``UNKNOWN`` becoming ``XX`` as in dcmrecv.
    """
    if prefix == UNKNOWN_PREFIX:
        prefix = SHORT_UNKNOWN_PREFIX
    return _checked(f"{prefix}_{started & 0xFFFFFFFF:08x}{draw & 0xFFFFFFFF:08x}{extension}")


def system_time_name(prefix: str, extension: str, now: datetime) -> str:
    """dcmrecv's ``+fst`` name ``<YYYYMMDDHHMMSS>.<microseconds>.<prefix><ext>``."""
    stamp = (
        f"{now.year:04d}{now.month:02d}{now.day:02d}"
        f"{now.hour:02d}{now.minute:02d}{now.second:02d}.{now.microsecond:06d}"
    )
    return _checked(f"{stamp}.{prefix}{extension}")


_DA = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")


def series_date_folder(series_date: str | None, today: date) -> str:
    """dcmrecv's ``+ssd`` folder: ``data/YYYY/MM/DD`` from a valid Series Date (0008,0021),
    else ``undef/<YYYYMMDD of today>`` (SPEC §12.3). A value that is not a calendar date
    (or is absent) never becomes a path."""
    match = _DA.fullmatch((series_date or "").strip(" \0"))
    if match is not None:
        year, month, day = (int(part) for part in match.groups())
        try:
            date(year, month, day)
        except ValueError:
            pass
        else:
            return os.path.join("data", *match.groups())
    return os.path.join("undef", f"{today.year:04d}{today.month:02d}{today.day:02d}")


def within(directory: str, path: str) -> bool:
    """True when ``path``, normalised, lies strictly inside ``directory``.

    String logic only (``os.path.abspath``): symbolic links are not followed, so this guards
    against names from the peer, not against a hostile local file system.
    """
    base = os.path.abspath(directory)
    target = os.path.abspath(path)
    return target != base and os.path.commonpath([base, target]) == base


def _checked(name: str) -> str:
    if not name or name in (".", "..") or any(c in name for c in _FORBIDDEN_IN_NAME):
        raise ValueError(f"unsafe file name: {name!r}")
    return name
