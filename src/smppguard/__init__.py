"""smppguard: an SMPP compliance proxy between legacy SMS senders and the carrier's SMSC."""

__version__ = "0.1.0"
