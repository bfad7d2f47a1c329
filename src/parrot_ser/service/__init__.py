"""HTTP service for an exported model (``parrot-ser serve``); see service/app.py."""
