"""Reading a bioimage.io package that may be hostile: only the package's own files, bounded.

:func:`open_package` opens a package (a ``.zip``, or a folder holding ``rdf.yaml``) and gives
:meth:`Package.rdf` (the description as plain Python data) and :meth:`Package.read` (one file of
the package by its relative name). Nothing here touches the network or any file outside the
package: a source that is a URL (``http://``, ``file://``, ...), an absolute path, a path with ``..``
or ``\\``, a symbolic link (a zip entry with a link's mode, or a link in a package folder) or
anything but a regular file is refused. ``bioimageio.spec`` is not used to read the package (its
loader resolves sources, downloads URLs and checks absolute paths).

Every size is checked before it is read (``PackageError``, a ``ValueError``, otherwise):

- the zip's central directory: at most ``MAX_ENTRIES`` entries and ``MAX_DIRECTORY_BYTES`` bytes,
  read from its end record before ``zipfile`` parses it; no two entries of the same name;
- each entry at most ``MAX_ENTRY_BYTES`` uncompressed, all entries together at most
  ``MAX_TOTAL_BYTES`` (as declared; reading stops at the cap whatever the header says);
- ``rdf.yaml`` at most ``MAX_RDF_BYTES``; its YAML at most ``MAX_YAML_NODES`` nodes counted with
  every alias expanded (a "billion laughs" file is refused after counting, before anything is
  built), nested at most ``MAX_YAML_DEPTH`` deep, no recursive aliases, safe tags only.
"""
from __future__ import annotations

import errno
import os
import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

__all__ = ["PackageError", "Package", "open_package", "check_source", "parse_yaml", "MAX_RDF_BYTES",
           "MAX_YAML_NODES", "MAX_YAML_DEPTH", "MAX_ENTRIES", "MAX_DIRECTORY_BYTES", "MAX_ENTRY_BYTES",
           "MAX_TOTAL_BYTES", "RDF_NAMES"]

MAX_RDF_BYTES = 256 * 1024            # rdf.yaml (bioimage.io's own are a few KB)
MAX_YAML_NODES = 20_000               # YAML nodes, aliases expanded
MAX_YAML_DEPTH = 64                   # YAML nesting
MAX_ENTRIES = 10_000                  # zip entries
MAX_DIRECTORY_BYTES = 4 * 1024 * 1024  # the zip's central directory
MAX_ENTRY_BYTES = 256 * 1024 * 1024   # one file of the package, uncompressed
MAX_TOTAL_BYTES = 1024 * 1024 * 1024  # all of the zip's entries together, uncompressed (declared)
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")   # and *.bioimageio.yaml, as bioimageio.spec looks for them

_CHUNK = 1 << 20
try:
    from lzma import LZMAError as _LZMAError
except ImportError:  # pragma: no cover (Python built without lzma)
    _LZMAError = zlib.error


class PackageError(ValueError):
    """The package is not one unet-rt will read (with the reason)."""


def check_source(source, what: str) -> str:
    """``source`` as a normalised relative name inside the package, or PackageError."""
    if not isinstance(source, str) or not source.strip():
        raise PackageError(f"{what}: the source must be a file name inside the package, got {_show(source)}")
    s = source.strip()
    low = s.lower()
    if "://" in s or low.startswith(("file:", "http:", "https:", "ftp:", "data:")):
        raise PackageError(f"{what}: {_show(s)} is a URL: unet-rt imports only files inside the package "
                           f"(no downloads)")
    if "\x00" in s or "\\" in s:
        raise PackageError(f"{what}: {_show(s)} is not a file name inside the package")
    p = PurePosixPath(s)
    if p.is_absolute() or (len(s) > 1 and s[1] == ":"):
        raise PackageError(f"{what}: {_show(s)} is an absolute path: unet-rt reads only files inside the package")
    parts = [x for x in p.parts if x != "."]
    if ".." in parts:
        raise PackageError(f"{what}: {_show(s)} leaves the package ('..'): unet-rt reads only files inside it")
    if not parts:
        raise PackageError(f"{what}: {_show(s)} is not a file name inside the package")
    return "/".join(parts)


def _show(x, n: int = 120) -> str:
    r = repr(x)
    return r if len(r) <= n else r[:n] + "..."


# ---- YAML ---------------------------------------------------------------------------------------

def parse_yaml(data: bytes, what: str = "rdf.yaml"):
    """Plain Python data (dict/list/str/int/float/bool/None/date) from YAML ``data``, bounded as the
    module doc says. The events are counted first (aliases expanded), then the document is built."""
    try:
        import yaml
    except ImportError as e:  # PyYAML: a dependency of the bioimageio extra
        from unet_rt.io.images import missing_extra

        raise missing_extra("bioimageio", "importing bioimage.io packages", e) from None
    if len(data) > MAX_RDF_BYTES:
        raise PackageError(f"{what}: {len(data)} bytes, more than the {MAX_RDF_BYTES} unet-rt reads")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PackageError(f"{what}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}      # anchor -> expanded node count of its (closed) node
    stack: list[list] = []          # open collections: [anchor, expanded count]
    total = 0
    docs = 0

    def add(n: int) -> None:
        nonlocal total
        total += n
        if total > MAX_YAML_NODES:
            raise PackageError(f"{what}: more than {MAX_YAML_NODES} YAML nodes (aliases expanded): "
                               f"not a bioimage.io description unet-rt reads")
        if stack:
            stack[-1][1] += n

    try:
        for ev in yaml.parse(text, Loader=loader):
            name = type(ev).__name__
            if name == "DocumentStartEvent":
                docs += 1
                if docs > 1:
                    raise PackageError(f"{what}: more than one YAML document")
            elif name == "AliasEvent":
                if ev.anchor not in sizes:
                    raise PackageError(f"{what}: YAML alias *{ev.anchor} is undefined or refers to itself")
                add(sizes[ev.anchor])
            elif name == "ScalarEvent":
                add(1)
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
            elif name in ("SequenceStartEvent", "MappingStartEvent"):
                add(1)
                if len(stack) >= MAX_YAML_DEPTH:
                    raise PackageError(f"{what}: YAML nested deeper than {MAX_YAML_DEPTH}")
                if ev.anchor is not None:
                    sizes.pop(ev.anchor, None)      # a redefined anchor: no alias may reach the open node
                stack.append([ev.anchor, 1])
            elif name in ("SequenceEndEvent", "MappingEndEvent"):
                anchor, n = stack.pop()
                if anchor is not None:
                    sizes[anchor] = n
        value = yaml.load(text, Loader=loader)
    except PackageError:
        raise
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise PackageError(f"{what}: not valid YAML ({msg[:200]})") from None
    except RecursionError:
        raise PackageError(f"{what}: YAML nested too deep") from None
    except (ValueError, TypeError, OverflowError) as e:   # a constructor's: 2020-02-31, a 5000-digit integer
        raise PackageError(f"{what}: not valid YAML ({type(e).__name__}: {str(e)[:200]})") from None
    return value


# ---- packages -----------------------------------------------------------------------------------

def open_package(path) -> "Package":
    """A zip file or a folder (or the rdf.yaml inside one): the package at a local ``path``."""
    s = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if s is None:
        raise PackageError(f"a package path must be a file or folder name, got {type(path).__name__}")
    if isinstance(s, bytes):
        s = os.fsdecode(s)
    if "://" in s:
        raise PackageError(f"{s}: a URL: unet-rt imports local packages only (download it yourself first)")
    p = Path(s)
    try:
        st = os.stat(p)
    except OSError as e:
        raise PackageError(f"{p}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        return _DirPackage(p)
    if stat.S_ISREG(st.st_mode) and (p.name in RDF_NAMES or p.name.endswith(".bioimageio.yaml")):
        return _DirPackage(p.parent, p.name)
    if not stat.S_ISREG(st.st_mode):
        raise PackageError(f"{p}: not a regular file or folder")
    return _ZipPackage(p)


class Package:
    """One package; use as a context manager (closes the zip)."""

    where: str

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        pass

    def read(self, name: str, cap: int = MAX_ENTRY_BYTES, what: str | None = None) -> bytearray:
        """The bytes of the package's file ``name`` (at most ``cap``)."""
        raise NotImplementedError

    def rdf_name(self) -> str:
        raise NotImplementedError

    def rdf(self) -> dict:
        """The package's description (rdf.yaml / bioimageio.yaml) as a dict."""
        name = self.rdf_name()
        value = parse_yaml(self.read(name, MAX_RDF_BYTES), f"{self.where}: {name}")
        if not isinstance(value, dict):
            raise PackageError(f"{self.where}: {name} is not a YAML mapping: not a bioimage.io description")
        return value


def _read_capped(f, size_hint: int, cap: int, what: str) -> bytearray:
    """At most ``cap`` bytes from ``f`` into one buffer (no copy at the end), else PackageError."""
    if size_hint > cap:
        raise PackageError(f"{what}: {size_hint} bytes, more than the {cap} unet-rt reads from a package")
    buf = bytearray(size_hint)
    n = 0
    while True:
        b = f.read(min(_CHUNK, cap + 1 - n))
        if not b:
            del buf[n:]
            return buf
        if n + len(b) > cap:
            raise PackageError(f"{what}: more than the {cap} bytes unet-rt reads from a package")
        buf[n:n + len(b)] = b
        n += len(b)


class _ZipPackage(Package):
    def __init__(self, path: Path):
        self.where = str(path)
        try:
            self._f = open(path, "rb")
        except OSError as e:
            raise PackageError(f"{path}: {e.strerror or e}") from None
        try:
            self._zip = self._open_zip()
        except BaseException:
            self._f.close()
            raise

    def _open_zip(self) -> zipfile.ZipFile:
        what = f"{self.where}: not a bioimage.io model package"
        try:
            end = zipfile._EndRecData(self._f)   # the end record zipfile itself uses (zip64 aware)
        except (zipfile.BadZipFile, OSError, struct.error, ValueError) as e:   # e.g. a zip64 record of many disks
            raise PackageError(f"{what} (not a zip file: {e})") from None
        if not end:
            raise PackageError(f"{what} (not a zip file)")
        entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
        if entries > MAX_ENTRIES or size > MAX_DIRECTORY_BYTES:
            raise PackageError(f"{self.where}: the zip declares {entries} entries in a {size}-byte directory, more "
                               f"than the {MAX_ENTRIES} entries / {MAX_DIRECTORY_BYTES} bytes unet-rt reads")
        try:
            z = zipfile.ZipFile(self._f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
                UnicodeDecodeError, struct.error) as e:
            raise PackageError(f"{what} (bad zip file: {e})") from None
        infos = z.infolist()
        if len(infos) > MAX_ENTRIES:
            raise PackageError(f"{self.where}: more than {MAX_ENTRIES} entries")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            seen: set = set()
            dup = next(n for n in names if n in seen or seen.add(n))
            raise PackageError(f"{self.where}: two zip entries named {_show(dup)}: an ambiguous package")
        total = 0
        for i in infos:
            if i.file_size > MAX_ENTRY_BYTES:
                raise PackageError(f"{self.where}: entry {_show(i.filename)} declares {i.file_size} bytes, more "
                                   f"than the {MAX_ENTRY_BYTES} unet-rt reads from a package")
            total += i.file_size
        if total > MAX_TOTAL_BYTES:
            raise PackageError(f"{self.where}: the entries declare {total} bytes in all, more than the "
                               f"{MAX_TOTAL_BYTES} unet-rt reads from a package")
        self._infos = {i.filename: i for i in infos}
        return z

    def close(self) -> None:
        self._zip.close()
        self._f.close()

    def rdf_name(self) -> str:
        for n in RDF_NAMES:
            if n in self._infos:
                return n
        found = sorted(n for n in self._infos if "/" not in n and n.endswith(".bioimageio.yaml"))
        if found:
            return found[0]
        raise PackageError(f"{self.where}: not a bioimage.io model package (no rdf.yaml or bioimageio.yaml in it)")

    def read(self, name: str, cap: int = MAX_ENTRY_BYTES, what: str | None = None) -> bytearray:
        what = what or f"{self.where}: {name}"
        info = self._infos.get(name)
        if info is None:
            raise PackageError(f"{what}: no such file in the package")
        mode = info.external_attr >> 16
        if info.create_system == 3 and stat.S_ISLNK(mode):
            raise PackageError(f"{what}: a symbolic link: unet-rt reads only regular files of a package")
        if info.is_dir():
            raise PackageError(f"{what}: a folder, not a file")
        try:
            with self._zip.open(info) as f:
                return _read_capped(f, info.file_size, cap, what)
        except PackageError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError,
                _LZMAError) as e:   # RuntimeError: encrypted entries
            raise PackageError(f"{what}: cannot read it from the zip ({type(e).__name__}: {str(e)[:200]})") from None


class _DirPackage(Package):
    """A package folder: names are resolved component by component with O_NOFOLLOW (no link is
    followed, none leaves the folder), the file must be regular, its size is checked before reading."""

    def __init__(self, root: Path, rdf: str | None = None):
        self.where = str(root)
        self._root = root
        self._rdf = rdf

    def rdf_name(self) -> str:
        if self._rdf:
            return self._rdf
        try:
            names = os.listdir(self._root)
        except OSError as e:
            raise PackageError(f"{self.where}: {e.strerror or e}") from None
        for n in RDF_NAMES:
            if n in names:
                return n
        found = sorted(n for n in names if n.endswith(".bioimageio.yaml"))
        if found:
            return found[0]
        raise PackageError(f"{self.where}: not a bioimage.io model package (no rdf.yaml or bioimageio.yaml in it)")

    def read(self, name: str, cap: int = MAX_ENTRY_BYTES, what: str | None = None) -> bytearray:
        what = what or f"{self.where}: {name}"
        parts = check_source(name, what).split("/")
        nofollow = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
        fds = []
        try:
            try:
                fds.append(os.open(self._root, os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY))
                for part in parts[:-1]:
                    fds.append(os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fds[-1]))
                fd = os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=fds[-1])
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PackageError(f"{what}: a symbolic link or not a file: unet-rt reads only regular files "
                                       f"inside the package") from None
                raise PackageError(f"{what}: {e.strerror or e}") from None
            fds.append(fd)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise PackageError(f"{what}: not a regular file")
            os.set_blocking(fd, True)
            with os.fdopen(os.dup(fd), "rb") as f:
                return _read_capped(f, st.st_size, cap, what)
        finally:
            for fd in fds:
                os.close(fd)
