"""LABEL, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK, MAINTAINER, ONBUILD's record, scratch."""

from __future__ import annotations

from typing import Any

import pytest

from tests.behaviour.case import Case, Fails, params

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CASES = [
    Case(
        "label-and-build-label",
        "testLabels",
        "FROM scratch\nLABEL foo=bar\n",
        flags=["--label", "bar=baz"],
        config={"Labels": {"foo": "bar", "bar": "baz"}},
    ),
    Case(
        "label-quoted-and-inherited",
        "testLabels",
        'FROM busybox AS base\nLABEL "a b"="c d" e=f\nFROM base\nLABEL e=g\n',
        config={"Labels": {"a b": "c d", "e": "g"}},
        # KeyValuePair.String(): the unquoted key and value.
        history=[("LABEL a b=c d e=f", True), ("LABEL e=g", True)],
    ),
    Case(
        "expose-expansion",
        "testExposeExpansion",
        'FROM scratch\nARG PORTS="3000 4000/udp"\nEXPOSE $PORTS\nEXPOSE 5000\n',
        config={"ExposedPorts": {"3000/tcp": {}, "4000/udp": {}, "5000/tcp": {}}},
    ),
    Case(
        "volume-forms",
        "testExportedHistory",
        'FROM busybox\nVOLUME /data\nVOLUME ["/a", "/b"]\n',
        config={"Volumes": {"/data": {}, "/a": {}, "/b": {}}},
        history=[("VOLUME [/data]", True), ("VOLUME [/a /b]", True)],
    ),
    Case(
        "stopsignal",
        "testExportedHistory",
        "FROM busybox\nSTOPSIGNAL SIGKILL\n",
        config={"StopSignal": "SIGKILL"},
        history=[("STOPSIGNAL SIGKILL", True)],
    ),
    Case(
        "stopsignal-invalid",
        "testExportedHistory",
        "FROM busybox\nSTOPSIGNAL NOTASIGNAL\n",
        fails=Fails(3, "NOTASIGNAL"),
    ),
    Case(
        "healthcheck-cmd",
        "testExportedHistory",
        "FROM busybox\nHEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD true\n",
        config={
            "Healthcheck": {
                "Test": ["CMD-SHELL", "true"],
                "Interval": 5_000_000_000,
                "Timeout": 3_000_000_000,
                "Retries": 2,
            }
        },
    ),
    Case(
        "healthcheck-none",
        "testExportedHistory",
        "FROM busybox\nHEALTHCHECK NONE\n",
        config={"Healthcheck": {"Test": ["NONE"]}},
    ),
    Case(
        "maintainer-history",
        "testExportedHistory",
        "FROM busybox\nMAINTAINER someone\n",
        history=[("MAINTAINER someone", True)],
    ),
    Case(
        "scratch-config-defaults",
        "testDockerfileScratchConfig",
        "FROM scratch\nENV foo=bar\n",
        config={"Env": [PATH, "foo=bar"], "WorkingDir": "/"},
        history=[("ENV foo=bar", True)],
        history_base=0,
    ),
    Case(
        "onbuild-recorded-not-run",
        "testOnBuildCleared",
        "FROM busybox\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n",
        config={"OnBuild": ["RUN mkdir -p /out && echo -n 11 >> /out/foo"]},
        absent=["/out"],
    ),
    Case(
        "env-replaces-in-place",
        "testDockerfileScratchConfig",
        "FROM busybox\nENV A=1 B=2\nENV A=3\n",
        config={
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "A=3",
                "B=2",
            ]
        },
    ),
    Case(
        "lowercase-instructions",
        "testDockerfileLowercase",
        "from busybox\nlabel x=y\nenv a=b\n",
        config={"Labels": {"x": "y"}},
        env_has={"a": "b"},
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_metadata(case: Case, behave: Any) -> None:
    behave(case)
