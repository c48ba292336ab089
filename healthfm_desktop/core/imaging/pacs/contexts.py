"""Presentation contexts for query/retrieve/store.

Retrieval proposes every storage SOP class of the study once per transfer syntax, each in its
own presentation context: the peer then finds a context matching the file exactly as stored and
sends it untouched. (A context listing several syntaxes lets the peer pick one and transcode;
Orthanc 1.10 cannot transcode JPEG 2000, so an uncompressed-only SCU gets nothing at all.)
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2K,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import build_context, build_role
from pynetdicom.presentation import PresentationContext, StoragePresentationContexts
from pynetdicom.sop_class import (
    CTImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    Verification,
)

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
# the syntaxes a retrieval accepts as stored: uncompressed, deflated, JPEG baseline/extended/
# lossless, JPEG-LS, JPEG 2000, HTJ2K and RLE; every one can be decoded by the viewer's stack
RETRIEVE_TRANSFER_SYNTAXES: list[UID] = [
    *UNCOMPRESSED,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
    RLELossless,
]

# PS3.8 9.3.2.2: at most 128 presentation contexts (odd IDs 1..255) per association
MAX_CONTEXTS = 128

# when the peer does not tell which SOP classes a study holds, these come first
COMMON_STORAGE_CLASSES: list[UID] = [
    CTImageStorage,
    MRImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    SecondaryCaptureImageStorage,
    EnhancedCTImageStorage,
    EnhancedMRImageStorage,
]

STORAGE_CLASSES: list[UID] = [UID(cx.abstract_syntax) for cx in StoragePresentationContexts]


def query_contexts() -> list[PresentationContext]:
    return [build_context(Verification), build_context(StudyRootQueryRetrieveInformationModelFind)]


def retrieve_contexts(
    sop_classes: Iterable[str], move: bool = False
) -> tuple[list[PresentationContext], list]:
    """Contexts and SCP/SCU role items for a C-GET (or C-MOVE) of objects of ``sop_classes``.

    Each class gets one context per syntax while room lasts; classes beyond that share a
    single multi-syntax context (the peer may then transcode) so nothing is refused outright.
    """
    model = StudyRootQueryRetrieveInformationModelMove if move else StudyRootQueryRetrieveInformationModelGet
    contexts = [build_context(StudyRootQueryRetrieveInformationModelFind), build_context(model)]
    if move:
        return contexts, []
    classes = list(dict.fromkeys(UID(c) for c in sop_classes if c))
    room = MAX_CONTEXTS - len(contexts)
    classes = classes[:room]
    per_class = len(RETRIEVE_TRANSFER_SYNTAXES)
    # the most classes that can have one context per syntax while the rest keep one each
    full = min(len(classes), (room - len(classes)) // (per_class - 1))
    for index, sop_class in enumerate(classes):
        if index < full:
            contexts.extend(build_context(sop_class, syntax) for syntax in RETRIEVE_TRANSFER_SYNTAXES)
        else:
            contexts.append(build_context(sop_class, RETRIEVE_TRANSFER_SYNTAXES))
    return contexts, [build_role(sop_class, scp_role=True) for sop_class in classes]


def storage_scp_contexts() -> list[PresentationContext]:
    """What our C-STORE SCP accepts: every storage class, every syntax we can read, as sent."""
    return [build_context(sop_class, RETRIEVE_TRANSFER_SYNTAXES) for sop_class in STORAGE_CLASSES]


def store_contexts(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """One context per (SOP class, transfer syntax) of the files to send: files go as they are
    stored, never transcoded; one whose exact pairing the peer refuses is reported unsent."""
    unique = list(dict.fromkeys((UID(c), UID(s)) for c, s in pairs))
    return [build_context(sop_class, syntax) for sop_class, syntax in unique[:MAX_CONTEXTS]]
