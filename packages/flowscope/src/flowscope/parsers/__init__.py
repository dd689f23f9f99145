"""The built-in application-layer parsers, each registered through the
``flowscope.parsers`` entry-point group exactly as a third-party plugin is."""
