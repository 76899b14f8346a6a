"""Runnable examples: importing members from web apps (see the README)."""
