"""HealthFM Desktop: an offline medical AI workstation."""

__version__ = "0.1.0"


def _silence_patient_data_loggers() -> None:
    """PyRuSH (medspaCy's sentence splitter) logs every token of every note at DEBUG level
    through loguru, straight to stderr: patient text in the logs. Switch that off for good."""
    try:
        from loguru import logger
    except ImportError:  # medspaCy not installed: nothing logs note text
        return
    logger.disable("PyRuSH")


_silence_patient_data_loggers()
