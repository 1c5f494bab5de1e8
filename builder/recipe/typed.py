"""Syntax-tree Nodes to typed instructions, validating flags and arity as BuildKit does.

Every string stays raw (quotes kept, variables unexpanded): `resolve.resolve()` expands the
fields BuildKit expands once the stage's scope is known. Flag values are parsed here when
they are literal (values.py; resolve() parses the others after expansion), and flags we do
not support are refused here. Errors carry FILE:LINE:COL, the source line for the caret,
and a hint saying what the instruction expects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from builder.errors import RecipeError, SourceLocation
from builder.recipe import instructions as ins
from builder.recipe import values
from builder.recipe.expand import ExpansionError, expand_word
from builder.recipe.flags import FlagError, ParsedFlags, parse_flags
from builder.recipe.gostr import go_quote
from builder.recipe.mounts import FROM_NOT_EXPANDED, MountError, mount_from, parse_mount
from builder.recipe.suggest import closest
from builder.recipe.tree import Node, SyntaxTree
from builder.record import dataclass

# BuildKit's stage-name rule (after lower-casing).
STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)

USAGE: Mapping[str, str] = {
    "FROM": "usage: FROM [--platform=<platform>] <image> [AS <name>]",
    "RUN": "usage: RUN [--mount=...] [--network=...] [--security=...] <command>",
    "COPY": "usage: COPY [--from=<stage>] [--chown=...] [--chmod=...] [--link] <src>... <dest>",
    "ADD": "usage: ADD [--chown=...] [--chmod=...] [--checksum=...] [--link] <src>... <dest>",
    "ENV": "usage: ENV <key>=<value> ...",
    "LABEL": "usage: LABEL <key>=<value> ...",
    "ARG": "usage: ARG <name>[=<default>] ...",
    "WORKDIR": "usage: WORKDIR <path>",
    "USER": "usage: USER <user>[:<group>]",
    "CMD": 'usage: CMD ["executable", "arg"...] or CMD command line',
    "ENTRYPOINT": 'usage: ENTRYPOINT ["executable", "arg"...] or ENTRYPOINT command line',
    "SHELL": 'usage: SHELL ["executable", "parameters"]',
    "EXPOSE": "usage: EXPOSE <port>[/<protocol>] ...",
    "VOLUME": 'usage: VOLUME <path>... or VOLUME ["<path>", ...]',
    "STOPSIGNAL": "usage: STOPSIGNAL <signal>",
    "HEALTHCHECK": "usage: HEALTHCHECK [--interval=...] [--retries=N] CMD <command>, or NONE",
    "ONBUILD": "usage: ONBUILD <instruction>",
    "MAINTAINER": "usage: MAINTAINER <name> (deprecated: use LABEL)",
}
KNOWN = tuple(USAGE)


@dataclass(frozen=True)
class _Ctx:
    """What every converter needs: the node, its flags and how to raise at it."""

    node: Node
    filename: str
    flags: ParsedFlags

    @property
    def location(self) -> SourceLocation:
        return node_location(self.node, self.filename)

    def error(self, message: str, hint: str | None = None, word: str | None = None) -> RecipeError:
        loc = values.at_word(self.location, word)
        return RecipeError(message, loc, hint if hint is not None else USAGE.get(self.node.cmd))

    def invalid(self, problem: values.Problem) -> RecipeError:
        return values.invalid(problem, self.location)

    def unsupported(self, *flags: str) -> None:
        """Refuse each of `flags` that is set (a boolean flag set to false is harmless)."""
        for name in flags:
            if self.flags.flag(name) or self.flags.string(name) or self.flags.many(name):
                word = next(w for w in self.node.flags if w[2:].partition("=")[0] == name)
                raise values.invalid(
                    values.Problem(f"{self.node.cmd} --{name} is not supported yet", word=word),
                    self.location,
                )


def node_location(node: Node, filename: str) -> SourceLocation:
    return SourceLocation(filename, node.start_line, node.column, node.source_line or None)


def _from(c: _Ctx) -> ins.Instruction:
    args = c.node.value
    if len(args) not in (1, 3) or (len(args) == 3 and args[1].lower() != "as"):
        raise c.error("FROM requires either one or three arguments")
    stage = None
    if len(args) == 3:
        stage = args[2].lower()
        if not STAGE_NAME.match(stage):
            raise c.error(
                f"invalid name for build stage: {go_quote(args[2])},"
                " name can't start with a number or contain symbols",
                word=args[2],
            )
    platform = c.flags.string("platform")
    parsed = None
    if platform is not None and values.is_literal(platform):
        try:
            parsed = values.parse_platform(platform)
        except values.Problem as problem:
            raise c.invalid(problem) from None
    return ins.From(
        location=c.location,
        original=c.node.original,
        image=args[0],
        stage_name=stage,
        platform=platform,
        parsed_platform=parsed,
    )


def _choice(c: _Ctx, name: str, allowed: tuple[str, ...]) -> str | None:
    value = c.flags.string(name)
    if value is not None and value not in allowed:
        raise c.error(
            f"invalid --{name}={value}", f"one of: {', '.join(allowed)}", word=f"--{name}"
        )
    return value


def _run(c: _Ctx) -> ins.Instruction:
    if not c.node.value:
        raise c.error("RUN requires at least one argument")
    # insecure is refused by the build (engine/steps/run.py): first as an entitlement the
    # build did not allow, as BuildKit does, then as not supported yet.
    security = _choice(c, "security", ("sandbox", "insecure"))
    specs = c.flags.many("mount")
    mounts = []
    for spec in specs:
        if values.is_literal(spec):
            try:
                mounts.append(parse_mount(spec))
            except MountError as err:
                raise c.invalid(values.Problem(str(err), word=f"--mount={spec}")) from None
        elif "$" in (mount_from(spec) or ""):
            raise c.invalid(values.Problem(FROM_NOT_EXPANDED, word=f"--mount={spec}"))
    return ins.Run(
        location=c.location,
        original=c.node.original,
        command=c.node.value,
        exec_form=c.node.json,
        heredocs=c.node.heredocs,
        mounts=specs,
        # Complete only when every spec is literal; resolve() parses them all.
        run_mounts=tuple(mounts) if len(mounts) == len(specs) else (),
        network=_choice(c, "network", ("default", "none", "host")),
        security=security,
    )


def _sources_dest(c: _Ctx) -> tuple[tuple[str, ...], str]:
    args = c.node.value
    if len(args) < 2:
        raise c.error(
            f"{c.node.cmd} requires at least two arguments, but only one was provided."
            " Destination could not be determined"
        )
    return args[:-1], args[-1]


def _mode(c: _Ctx) -> int | None:
    chmod = c.flags.string("chmod")
    if chmod is None or not values.is_literal(chmod):
        return None  # resolve() parses it once expanded
    try:
        return values.parse_chmod(chmod)
    except values.Problem as problem:
        raise c.invalid(problem) from None


# BuildKit's toCommand: --from must read the same once expanded with no variables.
FROM_VARIABLE = (
    "variable expansion is not supported for --from, define a new stage with FROM using ARG"
    " from global scope as a workaround"
)


def _from_stage(c: _Ctx) -> str | None:
    value = c.flags.string("from")
    if value is not None and not values.is_literal(value):
        try:
            same = expand_word(value, {}) == value
        except ExpansionError:
            same = False
        if not same:
            raise c.invalid(values.Problem(FROM_VARIABLE, word="--from"))
    return value


def _copy(c: _Ctx) -> ins.Instruction:
    sources, dest = _sources_dest(c)
    # --link (BuildKit: the layer does not depend on the parent's files) is taken as a
    # plain COPY: the files it writes are the same.
    c.unsupported("parents", "exclude")
    from_stage = _from_stage(c)
    return ins.Copy(
        location=c.location,
        original=c.node.original,
        sources=sources,
        dest=dest,
        from_stage=from_stage,
        chown=c.flags.string("chown"),
        chmod=c.flags.string("chmod"),
        mode=_mode(c),
        heredocs=c.node.heredocs,
    )


def _add(c: _Ctx) -> ins.Instruction:
    sources, dest = _sources_dest(c)
    c.unsupported("exclude")
    checksum = c.flags.string("checksum")
    keep_git_dir = c.flags.flag("keep-git-dir")
    # A source that expands to a URL can only be seen by resolve(), which checks again.
    literal = [s for s in sources if values.is_literal(s)]
    try:
        values.add_sources(literal, None, False)
        if len(literal) == len(sources):
            values.add_sources(sources, checksum, keep_git_dir)
    except values.Problem as problem:
        raise c.invalid(problem) from None
    return ins.Add(
        location=c.location,
        original=c.node.original,
        sources=sources,
        dest=dest,
        chown=c.flags.string("chown"),
        chmod=c.flags.string("chmod"),
        mode=_mode(c),
        checksum=checksum,
        keep_git_dir=keep_git_dir,
        unpack=c.flags.bools.get("unpack"),
        heredocs=c.node.heredocs,
    )


def _pairs(c: _Ctx) -> tuple[tuple[str, str], ...]:
    # The parser gives (key, value, separator) triples; the separator is not needed here.
    value = c.node.value
    if not value or len(value) % 3:
        raise c.error(f"{c.node.cmd} requires at least one argument")
    pairs = tuple((value[i], value[i + 1]) for i in range(0, len(value), 3))
    for key, _ in pairs:
        if not key:
            raise c.error(f"{c.node.cmd} names can not be blank")
    return pairs


def _env(c: _Ctx) -> ins.Instruction:
    return ins.Env(location=c.location, original=c.node.original, pairs=_pairs(c))


def _label(c: _Ctx) -> ins.Instruction:
    return ins.Label(location=c.location, original=c.node.original, pairs=_pairs(c))


def _arg(c: _Ctx) -> ins.Instruction:
    if not c.node.value:
        raise c.error("ARG requires at least one argument")
    args: list[tuple[str, str | None]] = []
    for word in c.node.value:
        name, has_default, default = word.partition("=")
        if not name:
            raise c.error("ARG names can not be blank", word=word)
        args.append((name, default if has_default else None))
    return ins.Arg(location=c.location, original=c.node.original, args=tuple(args))


def _one(c: _Ctx) -> str:
    if len(c.node.value) != 1 or not c.node.value[0].strip():
        raise c.error(f"{c.node.cmd} requires exactly one argument")
    return c.node.value[0]


def _workdir(c: _Ctx) -> ins.Instruction:
    return ins.Workdir(location=c.location, original=c.node.original, path=_one(c))


def _user(c: _Ctx) -> ins.Instruction:
    return ins.User(location=c.location, original=c.node.original, user=_one(c))


def _stopsignal(c: _Ctx) -> ins.Instruction:
    signal = _one(c)
    if values.is_literal(signal):  # else resolve() checks it once expanded
        try:
            values.check_signal(signal)
        except values.Problem as problem:
            raise c.invalid(problem) from None
    return ins.Stopsignal(location=c.location, original=c.node.original, signal=signal)


def _maintainer(c: _Ctx) -> ins.Instruction:
    return ins.Maintainer(location=c.location, original=c.node.original, name=_one(c))


def _cmd(c: _Ctx) -> ins.Instruction:
    return ins.Cmd(
        location=c.location, original=c.node.original, command=c.node.value, exec_form=c.node.json
    )


def _entrypoint(c: _Ctx) -> ins.Instruction:
    return ins.Entrypoint(
        location=c.location,
        original=c.node.original,
        command=c.node.value,
        exec_form=c.node.json,
    )


def _shell(c: _Ctx) -> ins.Instruction:
    if not c.node.json:
        raise c.error("SHELL requires the arguments to be in JSON form")
    if not c.node.value:
        raise c.error("SHELL requires at least one argument")
    return ins.Shell(location=c.location, original=c.node.original, argv=c.node.value)


def _expose(c: _Ctx) -> ins.Instruction:
    if not c.node.value:
        raise c.error("EXPOSE requires at least one argument")
    try:
        for port in c.node.value:
            if values.is_literal(port):  # else resolve() checks it once expanded
                values.expose_ports(port)
    except values.Problem as problem:
        raise c.invalid(problem) from None
    return ins.Expose(location=c.location, original=c.node.original, ports=c.node.value)


def _volume(c: _Ctx) -> ins.Instruction:
    if not c.node.value:
        raise c.error("VOLUME requires at least one argument")
    return ins.Volume(location=c.location, original=c.node.original, paths=c.node.value)


def _healthcheck(c: _Ctx) -> ins.Instruction:
    args = c.node.value
    if not args:
        raise c.error("HEALTHCHECK requires at least one argument")
    kind = args[0].upper()
    if kind == "NONE":
        if len(args) != 1:
            raise c.error("HEALTHCHECK NONE takes no arguments")
        if c.flags.strings:
            raise c.error("HEALTHCHECK NONE takes no flags", word=c.node.flags[0])
        return ins.Healthcheck(location=c.location, original=c.node.original, test=("NONE",))
    if kind != "CMD":
        raise c.error(f"Unknown type {go_quote(args[0])} in HEALTHCHECK", "try CMD", word=args[0])
    if len(args) < 2 or (not c.node.json and not args[1].strip()):
        raise c.error("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *args[1:]) if c.node.json else ("CMD-SHELL", args[1])
    # HEALTHCHECK's flags are never expanded: every value is known here.
    try:
        durations = {
            flag.replace("-", "_"): values.healthcheck_duration(flag, c.flags.string(flag))
            for flag in ("interval", "timeout", "start-period", "start-interval")
        }
        retries = values.healthcheck_retries(c.flags.string("retries"))
    except values.Problem as problem:
        raise c.invalid(problem) from None
    return ins.Healthcheck(
        location=c.location,
        original=c.node.original,
        test=test,
        retries=retries,
        **durations,
    )


def _onbuild(c: _Ctx) -> ins.Instruction:
    inner = c.node.inner
    if inner is None:
        if not c.node.sub_cmd:
            raise c.error("ONBUILD requires at least one argument")
        trigger_text = _ONBUILD_PREFIX.sub("", c.node.original)
        inner = Node(
            cmd=c.node.sub_cmd.upper(),
            sub_cmd=None,
            json=c.node.json,
            original=trigger_text,
            start_line=c.node.start_line,
            end_line=c.node.end_line,
            flags=c.node.flags,
            value=c.node.value,
            heredocs=c.node.heredocs,
            column=c.node.column,
            source_line=c.node.source_line,
        )
    if inner.cmd == "ONBUILD":
        raise c.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if inner.cmd in ("FROM", "MAINTAINER"):
        raise c.error(f"{inner.cmd} isn't allowed as an ONBUILD trigger")
    instruction = to_instruction(inner, c.filename)
    # BuildKit's parseOnBuild: the trigger is the line, then each heredoc's body and
    # terminator, so that the child build parses the whole instruction again.
    trigger = _ONBUILD_PREFIX.sub("", c.node.original)
    for doc in c.node.heredocs or inner.heredocs:
        trigger += "\n" + doc.content + doc.name
    return ins.Onbuild(
        location=c.location,
        original=c.node.original,
        trigger=trigger,
        instruction=instruction,
    )


_CONVERTERS: Mapping[str, Callable[[_Ctx], ins.Instruction]] = {
    "FROM": _from,
    "RUN": _run,
    "COPY": _copy,
    "ADD": _add,
    "ENV": _env,
    "LABEL": _label,
    "ARG": _arg,
    "WORKDIR": _workdir,
    "USER": _user,
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "SHELL": _shell,
    "EXPOSE": _expose,
    "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
    "HEALTHCHECK": _healthcheck,
    "ONBUILD": _onbuild,
    "MAINTAINER": _maintainer,
}


def _written_words(node: Node) -> list[str]:
    """Every word of `node` that becomes a command, argument, variable, name or path: all
    but the heredoc bodies of COPY and ADD, which are file contents."""
    words = [*node.value, *node.flags]
    if (node.sub_cmd or node.cmd).upper() not in ("COPY", "ADD"):
        words += [doc.content for doc in node.heredocs]
    return words


def to_instruction(node: Node, filename: str) -> ins.Instruction:
    """One Node to its typed instruction; RecipeError on anything BuildKit would reject."""
    cmd = node.cmd.upper()
    convert = _CONVERTERS.get(cmd)
    location = node_location(node, filename)
    if convert is None:
        close = closest(node.cmd, KNOWN, case_sensitive=False)
        hint = f"did you mean {close}?" if close else None
        raise RecipeError(f"unknown instruction: {node.cmd}", location, hint)
    try:
        values.no_nul(cmd, _written_words(node))
    except values.Problem as problem:
        raise values.invalid(problem, location) from None
    try:
        # An ONBUILD node mirrors its inner instruction's flags; they are the inner's to parse.
        flags = parse_flags(cmd, node.flags if cmd != "ONBUILD" else ())
    except FlagError as err:
        ctx = _Ctx(node, filename, ParsedFlags({}, {}, {}))
        raise ctx.error(str(err), word=err.word) from None
    return convert(_Ctx(node, filename, flags))


def to_instructions(tree: SyntaxTree) -> tuple[ins.Instruction, ...]:
    """Every Node of `tree`, in order, as typed instructions."""
    return tuple(to_instruction(node, tree.filename) for node in tree.nodes)
