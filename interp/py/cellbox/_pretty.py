"""text/plain of results, shaped like IPython's pretty printer for the
common builtin containers (so outputs match ipykernel's), repr otherwise."""


def pretty(obj, max_width=79):
    rp = getattr(type(obj), "_repr_pretty_", None)
    if rp is None:
        return repr(obj)
    try:
        from IPython.lib.pretty import pretty as ipretty
    except ImportError:
        return repr(obj)
    return ipretty(obj, max_width=max_width)
