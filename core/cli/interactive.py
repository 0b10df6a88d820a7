"""The interactive chat: a prompt with line editing and history (readline), each reply
streamed, the conversation kept and sent with every turn.

``!multi`` … ``!end`` sends several lines as one message, ``!reset`` starts a new
conversation, ``!exit`` or Ctrl-D leaves.  Ctrl-C during a reply stops that reply
(its stream is closed) and the chat goes on; Ctrl-C at the prompt leaves.
"""

from __future__ import annotations

import contextlib
import sys

from .output import EXIT_INTERRUPTED, UsageError, error_line, note
from .session import Session
from .terminal import is_terminal

__all__ = ["COMMANDS", "chat"]

PROMPT = "> "
MORE = "… "
COMMANDS = {
    "!multi": "several lines as one message, up to a line !end",
    "!reset": "start a new conversation",
    "!exit": "leave (Ctrl-D too)",
    "!help": "this list",
}


def _enable_line_editing() -> None:
    # A Python built without readline still chats, without editing.
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  # importing it gives input() editing and history


def chat(session: Session, *, first: str | None = None) -> int:
    """Run the chat until the person leaves; the exit status (0, or 130 for Ctrl-C).

    :raises OutputError: standard output cannot be written.
    """
    on_terminal = is_terminal(sys.stdin)
    if on_terminal:
        _enable_line_editing()
    prompt, more = (PROMPT, MORE) if on_terminal else ("", "")
    conversation = session.conversation
    earlier = len(conversation.turns) // 2
    note(f"chatting with {session.label}, conversation {conversation.id}"
         + (f" ({earlier} earlier turn{'s' if earlier != 1 else ''})" if earlier else "")
         + ". !multi for several lines, !reset for a new conversation, !exit or Ctrl-D "
           "to leave; Ctrl-C stops a reply.")
    if first:
        _send(session, first)
    while True:
        try:
            line = input(prompt)
            words = line.split()
            if words == ["!multi"]:
                line = _lines(more)
            elif words in (["!exit"], ["!quit"]):
                return 0
            elif words == ["!reset"]:
                conversation.reset()
                note(f"new conversation {conversation.id}")
                continue
            elif len(words) == 1 and words[0].startswith("!"):
                unknown = "" if words[0] == "!help" else f"no command {words[0]}. "
                note(unknown + "; ".join(f"{name}: {what}" for name, what in COMMANDS.items()))
                continue
        except EOFError:
            session.out.end_line()
            print(file=sys.stderr)
            return 0
        except KeyboardInterrupt:
            print(file=sys.stderr)
            return EXIT_INTERRUPTED
        if line.strip():
            _send(session, line)


def _lines(more: str) -> str:
    """The lines of a ``!multi`` message, up to ``!end`` (or the end of input)."""
    lines: list[str] = []
    while True:
        try:
            line = input(more)
        except EOFError:
            break
        if line.strip() == "!end":
            break
        lines.append(line)
    return "\n".join(lines)


def _send(session: Session, prompt: str) -> None:
    from .chat import check_text

    try:
        check_text("the message", prompt)
    except UsageError as exc:
        note(f"error: {exc}")
        return
    outcome = session.turn(prompt)
    if outcome.error is not None:
        note(f"error: {error_line(outcome.error)}")
