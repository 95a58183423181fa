# SPDX-License-Identifier: MIT
"""A PEP 517 build backend for the tensorfd package that works offline.

It compiles tensorfd/*.c into tensorfd/_tensorfd<EXT_SUFFIX> against the
installed libtensorfd (pkg-config tensorfd: its version becomes the
package's) and packs a wheel with the standard library's zipfile. The
compiler is $CC (default cc); PKG_CONFIG and PKG_CONFIG_PATH are honoured.
"""

import base64
import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(HERE, "tensorfd")
SOURCES = ["module.c", "convert.c", "meta.c", "publisher.c", "message.c", "subscriber.c",
           "guard.c"]


def _pkg_config(*args):
    cmd = [os.environ.get("PKG_CONFIG", "pkg-config"), *args, "tensorfd"]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(
            "tensorfd: pkg-config does not find libtensorfd; install the C library first "
            "(make install) or set PKG_CONFIG_PATH to the directory of tensorfd.pc"
        ) from e
    return out.strip()


def _version():
    return _pkg_config("--modversion")


def _tag():
    impl = "cp%d%d" % sys.version_info[:2]
    abi = "cp%d%d%s" % (sys.version_info[0], sys.version_info[1], sys.abiflags)
    plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return "%s-%s-%s" % (impl, abi, plat)


def _compile(outdir):
    version = _version()
    cc = shlex.split(os.environ.get("CC", "cc"))
    so = os.path.join(outdir, "_tensorfd" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = cc + [
        "-shared", "-fPIC", "-O2", "-std=gnu11",
        "-isystem", sysconfig.get_paths()["include"],
        '-DTFD_BINDING_VERSION="%s"' % version,
        *shlex.split(_pkg_config("--cflags")),
        *[os.path.join(PKG, s) for s in SOURCES],
        "-Wl,--version-script=" + os.path.join(PKG, "module.sym"),
        "-o", so,
        *shlex.split(_pkg_config("--libs")),
    ]
    subprocess.run(cmd, check=True)
    return so, version


def _record_line(arcname, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (arcname, digest, len(data))


def _metadata(version):
    return "Metadata-Version: 2.1\nName: tensorfd\nVersion: %s\n" \
        "Summary: Hand tensors to another process without copying them\n" \
        "License: MIT\nRequires-Python: >=3.10\n" % version


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    version = _version()
    distinfo = "tensorfd-%s.dist-info" % version
    os.makedirs(os.path.join(metadata_directory, distinfo), exist_ok=True)
    with open(os.path.join(metadata_directory, distinfo, "METADATA"), "w") as f:
        f.write(_metadata(version))
    return distinfo


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with tempfile.TemporaryDirectory() as tmp:
        so, version = _compile(tmp)
        distinfo = "tensorfd-%s.dist-info" % version
        files = [("tensorfd/__init__.py", open(os.path.join(PKG, "__init__.py"), "rb").read()),
                 ("tensorfd/recording.py", open(os.path.join(PKG, "recording.py"), "rb").read()),
                 ("tensorfd/" + os.path.basename(so), open(so, "rb").read()),
                 (distinfo + "/METADATA", _metadata(version).encode()),
                 (distinfo + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: tfd_backend\n"
                                        "Root-Is-Purelib: false\nTag: %s\n" % _tag()).encode())]
        name = "tensorfd-%s-%s.whl" % (version, _tag())
        record = [_record_line(a, d) for a, d in files] + [distinfo + "/RECORD,,"]
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w",
                             zipfile.ZIP_DEFLATED) as z:
            for arcname, data in files:
                z.writestr(arcname, data)
            z.writestr(distinfo + "/RECORD", "\n".join(record) + "\n")
    return name
