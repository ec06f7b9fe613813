from rest_framework.pagination import CursorPagination


class LedgerCursorPagination(CursorPagination):
    """Newest first; ids only grow, so the cursor is stable while entries are appended."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
