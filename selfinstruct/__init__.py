"""selfinstruct: turn a domain corpus into a closed-book QA model that knows what it does not know."""

__version__ = "0.1.0"
