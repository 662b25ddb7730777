"""Choosing the slits of a multi-slit ASDF tree before asdf reads it.

A MOS ``_cal`` file holds every slit's arrays in its FITS extensions and every
slit's tree (metadata, the NIRSpec transform chain, references to those
extensions) in the ``slits`` list of its ASDF tree.  To reduce a visit part by
part, with memory bounded by a part (`nodcombine.lazyvisit`), each part opens
only its slits: `SlitLayout.select` cuts the YAML text of the tree so that
asdf parses, validates and converts only those, and `SlitLayout.index` keeps
of every slit only its scalar fields (name, source id, positions ...), enough
to group the slits into sources and families without reading an array or a WCS.

Nothing else changes: the top-level tree and the kept slits' text are those of
the file, the binary blocks stay where they are (their index is shifted with
the text), and the arrays are still read from the FITS extensions their
``fits:NAME,VER`` sources name.  A cut is refused (None) whenever it could
change what is read: a tree not laid out as stdatamodels writes it, or an
anchor defined in a dropped part and used in a kept one.
"""

import re

from nodcombine.asdfshare import shifted_block_index

__all__ = ["SlitLayout", "fits_sources", "with_fits_hash"]

_YAML_END = b"\n...\n"
_SLITS_KEY = b"\nslits:\n"
_ITEM = b"- "
_ANCHOR = re.compile(rb"&(\w+)")
_ALIAS = re.compile(rb"\*(\w+)")
_FITS_SOURCE = re.compile(rb"\bsource: fits:([ -~]+?),(\d+)\s*$", re.MULTILINE)
_HASH_LINE = re.compile(rb"(?m)^_fits_hash: ([0-9a-f]+)$")
_TAG_ONLY = re.compile(rb"- ![^\s{\[]+")
_ANCHOR_DEFINITION = re.compile(rb"&(\w+) ")


class SlitLayout:
    """Where each slit of a multi-slit ASDF tree lies in its YAML text.

    Parameters
    ----------
    asdf_bytes : bytes
        A whole ASDF file (YAML tree and binary blocks), as stored in the
        ``ASDF_METADATA`` cell of a FITS datamodel.
    reread : callable, optional
        Returns ``asdf_bytes`` again (from the file): the layout then keeps
        only offsets, not the bytes.

    Raises
    ------
    ValueError
        When the tree is not laid out as stdatamodels writes it: a line
        ``slits:`` at the top level followed by items ``- ...`` at column 0,
        their fields indented below them.
    """

    def __init__(self, asdf_bytes, reread=None):
        self.yaml_end = asdf_bytes.find(_YAML_END)
        if self.yaml_end < 0:
            raise ValueError("no end of the YAML tree")
        key = asdf_bytes.find(_SLITS_KEY, 0, self.yaml_end)
        if key < 0:
            raise ValueError("no top-level 'slits' list")
        self.items = []
        position = key + len(_SLITS_KEY)
        while position < self.yaml_end and asdf_bytes.startswith(_ITEM, position):
            end = position
            while True:  # the item's first line, then its indented lines
                end = asdf_bytes.find(b"\n", end, self.yaml_end + 1)
                if end < 0 or end >= self.yaml_end or asdf_bytes[end + 1 : end + 2] != b" ":
                    break
                end += 1
            end = self.yaml_end if end < 0 else end
            self.items.append((position, end + 1))
            position = end + 1
        if not self.items:
            raise ValueError("an empty or flow-style 'slits' list")
        self.head_end = key + len(_SLITS_KEY)
        self.tail_start = min(position, self.yaml_end + 1)
        self._one_line_nodes = _one_line_anchored_nodes(asdf_bytes[: self.yaml_end])
        match = _HASH_LINE.search(asdf_bytes, 0, self.items[0][0])
        #: the top-level ``_fits_hash`` of the tree, or None
        self.fits_hash = None if match is None else match.group(1).decode()
        # a many-slit tree is tens of MB: read again when needed, if it can be
        self._data, self._reread = (None, reread) if reread else (asdf_bytes, None)

    def __len__(self):
        return len(self.items)

    def _bytes(self):
        return self._data if self._data is not None else self._reread()

    def select(self, keep):
        """The ASDF file with only the slits at positions ``keep`` (in the file's order).

        Returns None when a kept part uses an anchor whose node cannot be moved.
        """
        wanted = sorted(set(keep))
        if wanted and not 0 <= wanted[0] <= wanted[-1] < len(self.items):
            raise IndexError(f"slit positions {wanted} outside 0..{len(self.items) - 1}")
        data = self._bytes()
        return self._joined(data, [data[slice(*self.items[k])] for k in wanted])

    def index(self):
        """The ASDF file with every slit's scalar fields only: no arrays, WCS or ``meta``.

        Enough to group the slits into sources; None when an anchor would be lost.
        """
        data = self._bytes()
        return self._joined(data, [_scalar_fields(data[a:b]) for a, b in self.items])

    def _joined(self, data, items):
        head = data[: self.head_end]
        if not items:  # an empty list must be written as one
            head = head[:-1] + b" []\n"
        tree = head + b"".join(items) + data[self.tail_start : self.yaml_end]
        if tree.endswith(b"\n"):  # the last item took the newline that opens the tail
            tree = tree[:-1]
        tree = self._anchors_restored(tree)
        if tree is None:
            return None
        tail = data[self.yaml_end :]
        return tree + shifted_block_index(tail, len(tree) - self.yaml_end)

    def _anchors_restored(self, tree):
        """``tree`` with each alias whose anchor was cut out defined at its first use.

        asdf writes an object referenced twice once, with an anchor, and an
        alias elsewhere; a slit's tree may alias a small node (a bounding
        interval ``[-1, 1]``) anchored in another slit.  A one-line node is
        written out again where it is first used; None for anything longer.
        """
        missing = set(_ALIAS.findall(tree)) - set(_ANCHOR.findall(tree))
        for name in sorted(missing):
            node = self._one_line_nodes.get(name)
            if node is None:
                return None
            first = re.search(rb"\*" + re.escape(name) + rb"\b", tree)
            tree = tree[: first.start()] + b"&" + name + b" " + node + tree[first.end() :]
        return tree


def with_fits_hash(asdf_bytes, value):
    """``asdf_bytes`` with its top-level ``_fits_hash`` set to ``value`` (same length).

    stdatamodels compares that hash with the hash of the headers it is given
    and, when they match, trusts the tree rather than the headers.  A SHA-256
    digest keeps the text's length, so the block index stays right.  None if
    the tree has no such line.
    """
    match = _HASH_LINE.search(asdf_bytes)
    if match is None or len(match.group(1)) != len(value):
        return None
    start, end = match.span(1)
    return asdf_bytes[:start] + value.encode() + asdf_bytes[end:]


def fits_sources(asdf_bytes):
    """The ``(EXTNAME, EXTVER)`` of every array the tree reads from a FITS extension."""
    yaml_end = asdf_bytes.find(_YAML_END)
    end = len(asdf_bytes) if yaml_end < 0 else yaml_end
    return {
        (m.group(1).decode(), int(m.group(2))) for m in _FITS_SOURCE.finditer(asdf_bytes, 0, end)
    }


def _one_line_anchored_nodes(text):
    """``{anchor: node text}`` of the anchored nodes written on one line without aliases.

    A node is on one line when the next line is not indented further (no
    children, no continuation).
    """
    nodes = {}
    for match in _ANCHOR_DEFINITION.finditer(text):
        start = text.rfind(b"\n", 0, match.start()) + 1
        end = text.find(b"\n", match.end())
        end = len(text) if end < 0 else end
        line = text[start:end]
        indent = len(line) - len(line.lstrip(b" "))
        lead = line[indent : match.start() - start]
        column = indent  # of the key or item the node is the value of
        while lead.startswith(b"- "):
            column, lead = column + 2, lead[2:]
        if lead and not (lead.endswith(b": ") and b" " not in lead[:-2]):
            continue  # not the value of a key or an item
        node = text[match.end() : end]
        # its children or continuation: an item's at its column, a key's beyond
        deeper = column if not lead else column + 1
        following = text[end + 1 : end + 1 + deeper]
        if following.startswith(b" " * deeper) or b"*" in node or not node.strip():
            continue
        nodes[match.group(1)] = node
    return nodes


def _scalar_fields(item):
    """A slit's text with its scalar top-level fields only (no arrays, no WCS, no ``meta``).

    The slit's fields sit two columns in (the first may share the item's
    ``- `` line, unless that holds a tag).  A field whose value is tagged,
    anchored or on the following lines (a mapping, a list, an array) is
    dropped with everything under it; a plain value is kept with its
    continuation lines.
    """
    lines = item.split(b"\n")[:-1]  # the item ends with a newline
    first = lines[0].rstrip()
    tagged = first == b"-" or _TAG_ONLY.fullmatch(first)
    fields = lines[1:] if tagged else [b"  " + lines[0][2:], *lines[1:]]
    kept, keep = [], False
    for line in fields:
        if line.startswith(b"  ") and not line.startswith((b"   ", b"  - ")):
            _, colon, value = line.partition(b": ")
            value = value.strip()
            keep = bool(colon) and bool(value) and not value.startswith((b"!", b"&", b"*"))
        if keep:
            kept.append(line)
    if tagged:
        kept.insert(0, lines[0])
    elif kept:
        kept[0] = b"- " + kept[0][2:]
    else:
        kept = [b"- {}"]
    return b"\n".join(kept) + b"\n"
