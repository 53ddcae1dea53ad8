"""The Pulumi program of mlrollback: config, components and the stack builder."""

from __future__ import annotations
