"""Expand exactly the fields of an instruction that BuildKit expands, and nothing else.

RUN, CMD and ENTRYPOINT (both forms) are left to the shell in the image; HEALTHCHECK, SHELL,
MAINTAINER and ONBUILD triggers are stored raw; COPY --from is never expanded. Heredoc bodies
of COPY/ADD with an unquoted delimiter are expanded with quotes left alone (they belong to the
file's text); RUN heredocs are the shell's.

The parsed value of an expanded flag (--chmod, --platform, --mount) is parsed here from
the expanded text, by the same functions typing uses on literal values (values.py).
"""

from __future__ import annotations

from collections.abc import Mapping

from builder import record
from builder.errors import RecipeError
from builder.recipe import instructions as ins
from builder.recipe import values
from builder.recipe.expand import ExpansionError, expand_word, expand_words, process_word
from builder.recipe.mounts import MountError, RunMount, parse_mount
from builder.recipe.tree import Heredoc

# Heredoc bodies always use backslash (BuildKit builds a fresh lexer for them).
_HEREDOC_ESCAPE = "\\"


class _Resolver:
    def __init__(self, env: Mapping[str, str], escape: str, keyword: str) -> None:
        self.env = env
        self.escape = escape
        self.keyword = keyword

    def word(self, text: str) -> str:
        # Typing refused a NUL written in the recipe; one here came from a variable.
        expanded = expand_word(text, self.env, self.escape)
        values.no_nul(self.keyword, (expanded,))
        return expanded

    def maybe(self, text: str | None) -> str | None:
        return None if text is None else self.word(text)

    def words(self, texts: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(self.word(t) for t in texts)

    def pairs(self, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((self.word(k), self.word(v)) for k, v in pairs)

    def heredocs(self, docs: tuple[Heredoc, ...]) -> tuple[Heredoc, ...]:
        return tuple(
            record.replace(
                d,
                content=process_word(d.content, self.env, _HEREDOC_ESCAPE, skip_quotes=True).text,
            )
            if d.expand
            else d
            for d in docs
        )

    def mount(self, spec: str) -> str:
        # `type=cache,target=$DIR,id=x`: each field's value is expanded on its own, so a
        # comma produced by a variable cannot inject a new field.
        fields = []
        for field in spec.split(","):
            key, eq, value = field.partition("=")
            # from= is not expanded, as in BuildKit (parse_mount refuses a `$` in it).
            expand = eq and key.strip().lower() != "from"
            fields.append(f"{key}={self.word(value)}" if expand else field)
        return ",".join(fields)

    @staticmethod
    def run_mounts(raw: tuple[str, ...], expanded: tuple[str, ...]) -> tuple[RunMount, ...]:
        parsed = []
        for written, spec in zip(raw, expanded, strict=True):
            try:
                parsed.append(parse_mount(spec))
            except MountError as err:
                raise values.Problem(str(err), word=f"--mount={written}") from None
        return tuple(parsed)

    @staticmethod
    def check_add(instr: ins.Add, sources: tuple[str, ...], checksum: str | None) -> None:
        try:
            values.add_sources(sources, checksum, instr.keep_git_dir)
        except values.Problem as problem:
            if problem.word in sources:  # point at the source as written
                problem.word = instr.sources[sources.index(problem.word)]
            raise

    def resolve(self, instr: ins.Instruction) -> ins.Instruction:
        r = record.replace
        match instr:
            case ins.From():
                platform = self.maybe(instr.platform)
                return r(
                    instr,
                    image=self.word(instr.image),
                    platform=platform,
                    parsed_platform=values.parse_platform(platform),
                )
            case ins.Env() | ins.Label():
                return r(instr, pairs=self.pairs(instr.pairs))
            case ins.Arg():
                return r(instr, args=tuple((self.word(n), self.maybe(d)) for n, d in instr.args))
            case ins.Workdir():
                return r(instr, path=self.word(instr.path))
            case ins.User():
                return r(instr, user=self.word(instr.user))
            case ins.Stopsignal():
                signal = self.word(instr.signal)
                values.check_signal(signal)
                return r(instr, signal=signal)
            case ins.Volume():
                return r(instr, paths=self.words(instr.paths))
            case ins.Expose():
                # Multi-word: `EXPOSE $PORTS` with PORTS="80 443" is two ports.
                ports = tuple(
                    p for text in instr.ports for p in expand_words(text, self.env, self.escape)
                )
                values.no_nul(self.keyword, ports)
                for port in ports:
                    values.expose_ports(port)
                return r(instr, ports=ports)
            case ins.Copy() | ins.Add():
                sources = self.words(instr.sources)
                extra = {}
                if isinstance(instr, ins.Add):
                    # ADD's --checksum is expanded too; COPY's --from never is.
                    extra["checksum"] = self.maybe(instr.checksum)
                    self.check_add(instr, sources, extra["checksum"])
                chmod = self.maybe(instr.chmod)
                return r(
                    instr,
                    sources=sources,
                    dest=self.word(instr.dest),
                    chown=self.maybe(instr.chown),
                    chmod=chmod,
                    mode=values.parse_chmod(chmod),
                    heredocs=self.heredocs(instr.heredocs),
                    **extra,
                )
            case ins.Run():
                mounts = tuple(self.mount(m) for m in instr.mounts)
                return r(instr, mounts=mounts, run_mounts=self.run_mounts(instr.mounts, mounts))
            case _:
                return instr


def resolve(instr: ins.Instruction, env: Mapping[str, str], escape: str) -> ins.Instruction:
    """A copy of `instr` with the fields BuildKit expands expanded and unquoted.

    `env` is what `$x` sees at this step (StageScope.expansion_env(), or the global args for
    FROM). An expansion error becomes a RecipeError at the instruction's location; a flag
    value that is not valid once expanded, a values.InvalidValue at the flag.
    """
    try:
        return _Resolver(env, escape, instr.keyword).resolve(instr)
    except ExpansionError as err:
        raise RecipeError(
            f"{instr.keyword}: {err}", instr.location, "check the ${...} syntax and quotes"
        ) from None
    except values.Problem as problem:
        raise values.invalid(problem, instr.location) from None
