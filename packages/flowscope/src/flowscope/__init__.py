"""flowscope: deep packet inspection for Python."""
