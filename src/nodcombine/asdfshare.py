"""Reading repeated WCS sub-trees of an ASDF tree once.

Every slit of a NIRSpec MOS ``_cal`` file carries its own copy of the whole
NIRSpec transform chain (detector to sky, some 1,800 lines of YAML and 40
binary blocks a slit).  Most of it is the same for every slit of an exposure
(camera, disperser, collimator, fore optics, the telescope pointing); only the
slit-specific transforms and bounding boxes differ.  asdf parses, validates and
converts each copy anew, and that is nearly all the time stdatamodels needs to
open such a file.

`share_repeated_wcs` rewrites the YAML text so that a transform or gwcs
sub-tree that repeats an earlier one *exactly* becomes a YAML alias of it: the
tree asdf would have written had the equal objects been one object.  asdf
then parses, validates and converts it once (its validator skips an instance
it has seen, and its tree walk returns the converted object of a node it has
seen), and the slits share the converted object.  Nothing else changes: the
binary blocks stay where they are, so every ``source`` index still points at
the same bytes.

Two sub-trees are the same when their text is, with three differences made
irrelevant: indentation, the names of anchors defined and used inside them, and
the indices of binary blocks, which are compared by the blocks' checksums.  A
sub-tree defining an anchor used outside it, or using one defined outside it,
is never replaced.  Only transform and gwcs tags are shared: nothing in this
package changes a WCS it has read, and sharing anything else (arrays,
metadata) could let a change to one slit reach another.
"""

import hashlib
import re
import struct
from collections import defaultdict

__all__ = ["share_repeated_wcs"]

#: a tagged node opening a block mapping: ``key: !tag`` or ``- !tag``, nothing after
_BLOCK_HEADER = re.compile(rb"^( *)(- |[^\s#][^\n]*?: )(&\S+ )?!(\S+)$")
_ANCHOR = re.compile(rb"&(id\d+)\b")
_ALIAS = re.compile(rb"\*(id\d+)\b")
_SOURCE = re.compile(rb"\bsource: (\d+)\b")
_YAML_END = b"\n...\n"
_BLOCK_MAGIC = b"\xd3BLK"
_BLOCK_INDEX = b"#ASDF BLOCK INDEX\n"
_INDEX_ENTRY = re.compile(rb"(?m)^- (\d+)$")
#: flags, compression, allocated, used, data size, checksum (ASDF standard, block header)
_BLOCK_HEADER_FORMAT = ">I4sQQQ16s"
#: sub-trees shorter than this many lines are cheaper to read than to compare
MIN_LINES = 8


def share_repeated_wcs(asdf_bytes):
    """The ASDF file ``asdf_bytes`` with repeated WCS sub-trees made aliases.

    Parameters
    ----------
    asdf_bytes : bytes
        A whole ASDF file (YAML tree and binary blocks), e.g. the
        ``ASDF_METADATA`` cell of a FITS datamodel.

    Returns
    -------
    bytes
        The same file with each transform or gwcs sub-tree that repeats an
        earlier one replaced by an alias of it; ``asdf_bytes`` itself when
        nothing repeats or the tree is not laid out as expected.
    """
    end = asdf_bytes.find(_YAML_END)
    if end < 0:
        return asdf_bytes
    lines = asdf_bytes[:end].split(b"\n")
    shared = _Sharer(lines, _block_checksums(asdf_bytes, end)).run()
    if shared is None:
        return asdf_bytes
    tree = b"\n".join(shared)
    # the end of the YAML ("\n...\n") and the binary blocks, untouched; only
    # the index of where the blocks start moves with them
    return tree + shifted_block_index(asdf_bytes[end:], len(tree) - end)


def shifted_block_index(tail, shift):
    """``tail`` with the offsets of its closing block index moved by ``shift`` bytes."""
    start = tail.rfind(_BLOCK_INDEX)
    if start < 0:
        return tail
    index = _INDEX_ENTRY.sub(lambda m: b"- %d" % (int(m.group(1)) + shift), tail[start:])
    return tail[:start] + index


def _block_checksums(data, start):
    """Checksum of each binary block after ``start``, by block index (may be partial)."""
    checksums = []
    position = data.find(_BLOCK_MAGIC, start)
    size = struct.calcsize(_BLOCK_HEADER_FORMAT)
    while position >= 0 and data.startswith(_BLOCK_MAGIC, position):
        (header_size,) = struct.unpack_from(">H", data, position + 4)
        if header_size < size:
            break
        _, _, allocated, used, _, checksum = struct.unpack_from(
            _BLOCK_HEADER_FORMAT, data, position + 6
        )
        body = position + 6 + header_size
        if not any(checksum):  # written without one: hash the bytes themselves
            checksum = hashlib.blake2b(data[body : body + used], digest_size=16).digest()
        checksums.append(checksum)
        position = body + allocated
    return checksums


class _Sharer:
    """One pass over the YAML lines, replacing repeats by aliases."""

    def __init__(self, lines, checksums):
        self.lines = lines
        self.checksums = checksums
        self.indents = [_indent(line) for line in lines]
        self.anchor_line = {}
        self.alias_lines = defaultdict(list)
        for number, line in enumerate(lines):
            for name in _ANCHOR.findall(line):
                self.anchor_line[name] = number
            for name in _ALIAS.findall(line):
                self.alias_lines[name].append(number)
        # anchors on one-line values ([-1, 1] domains shared by every
        # polynomial of the file): an alias of one stands for its value
        self.values = {}
        for name, number in self.anchor_line.items():
            value = lines[number].split(b"&" + name + b" ", 1)[-1]
            if value and self._block_end(number) is None and not value.startswith(b"!"):
                self.values[name] = value

    def run(self):
        """The rewritten lines, or None when nothing repeats."""
        first_seen = {}  # key -> index of the first occurrence's header in `out`
        anchors = {}  # key -> the anchor name given to the first occurrence
        out = []
        number, replaced = 0, 0
        while number < len(self.lines):
            line = self.lines[number]
            header = _BLOCK_HEADER.match(line)
            stop = self._block_end(number) if header and _is_wcs_tag(header.group(4)) else None
            key = None
            if stop is not None and stop - number >= MIN_LINES and not header.group(3):
                key, removable = self._key(number, stop)
            if key is not None and key in first_seen and removable:
                if key not in anchors:
                    anchors[key] = f"nc{len(anchors) + 1}"
                    opening = first_seen[key]
                    out[opening] = _with_anchor(out[opening], anchors[key])
                out.append(header.group(1) + header.group(2) + b"*" + anchors[key].encode())
                number = stop
                replaced += 1
                continue
            if key is not None:
                first_seen.setdefault(key, len(out))
            out.append(line)
            number += 1
        return out if replaced else None

    def _block_end(self, number):
        """Index of the first line after the block opened at ``number`` (None if empty)."""
        indent = self.indents[number]
        stop = number + 1
        while stop < len(self.lines) and self.indents[stop] > indent:
            stop += 1
        return stop if stop > number + 1 else None

    def _key(self, start, stop):
        """What makes lines ``start:stop`` equal to another block, and whether they may go.

        Returns ``(None, False)`` for a block that uses an anchor of a
        multi-line node defined outside it. A block defining an anchor used
        outside it may be the first occurrence, but is not removable.
        """
        renamed, removable = {}, True
        for number in range(start, stop):
            for name in _ANCHOR.findall(self.lines[number]):
                if any(not start <= use < stop for use in self.alias_lines[name]):
                    removable = False
                if name not in self.values:
                    renamed[name] = b"a%d" % len(renamed)
            for name in _ALIAS.findall(self.lines[number]):
                if name not in renamed and name not in self.values:
                    return None, False
        digest = hashlib.blake2b(digest_size=20)
        digest.update(self.lines[start].rsplit(b"!", 1)[1])
        base = self.indents[start]
        for number in range(start + 1, stop):
            text = self.lines[number][base:]
            if b"&id" in text or b"*id" in text:
                text = _ANCHOR.sub(lambda m: self._anchor_key(m, renamed), text)
                text = _ALIAS.sub(lambda m: self._alias_key(m, renamed), text)
            if b"source: " in text and self._in_ndarray(number):
                text = _SOURCE.sub(self._checksum_of, text)
            digest.update(b"\n" + text)
        return digest.digest(), removable

    @staticmethod
    def _anchor_key(match, renamed):
        name = match.group(1)
        # a one-line value's anchor says nothing about the value
        return b"&" + renamed[name] if name in renamed else b""

    def _alias_key(self, match, renamed):
        name = match.group(1)
        return b"*" + renamed[name] if name in renamed else self.values[name]

    def _in_ndarray(self, number):
        """Whether a ``source:`` on line ``number`` is an array's block index.

        asdf writes it in the array's flow mapping (``!core/ndarray-1.1.0
        {source: 3, ...}``) or as the first key under its tag; any other
        ``source`` is an ordinary value, compared as written.
        """
        return b"ndarray" in self.lines[number] or b"ndarray" in self.lines[number - 1]

    def _checksum_of(self, match):
        index = int(match.group(1))
        if index >= len(self.checksums):  # unknown block: compare the index itself
            return match.group(0)
        return b"source: " + self.checksums[index].hex().encode()


def _indent(line):
    stripped = line.lstrip(b" ")
    # blank lines belong to the block around them
    return len(line) - len(stripped) if stripped else 1 << 30


def _is_wcs_tag(tag):
    return b"transform/" in tag or b"gwcs/" in tag


def _with_anchor(line, name):
    """``line`` (a block header) with the anchor ``name`` before its tag."""
    head, tag = line.rsplit(b"!", 1)
    return head + b"&" + name.encode() + b" !" + tag
