"""The teacher request portal: a web form, operator approval, live progress (`hubfleet portal serve`)."""

from __future__ import annotations

from hubfleet.portal.app import create_app

__all__ = ["create_app"]
