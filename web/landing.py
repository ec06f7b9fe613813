"""``/``: a small page for a person who opens the service's address in a browser, linking the
API documentation, the error codes, the admin and the health probes."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "web/landing.html")
