"""PACS views: the peers settings page, the query/retrieve dialog and the local study browser.
They exchange plain dicts with controllers.pacs and import no DICOM library."""
