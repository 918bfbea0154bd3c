"""User-facing errors: one line that says what is wrong and how to fix it (CLI exits 2)."""


class GdasError(Exception):
    """A problem with the user's input (data, options, genotype, checkpoint).

    The CLI prints ``gdas: error: <message>`` and exits with status 2, without a traceback.
    Messages are one line and should name the fix.
    """
