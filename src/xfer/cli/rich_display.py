"""The display for people: progress bars and short lines on stderr, drawn with rich.

Only this module (and ``--quiet``) imports rich, so ``--json`` never pays for it.
Anything a peer chose goes through ``display_name`` (control characters shown as
``\\x1b``, rich markup escaped) before it is printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress, ProgressColumn, TaskID, TransferSpeedColumn
from rich.text import Text

from ..transfer.names import display_name, display_text
from ..units import human_size
from .display import Event, RoomOpened, _Emits

if TYPE_CHECKING:
    from rich.progress import Task

    from .context import Environment
    from .status import Failure

ERROR_CHARS = 1000  # an error message longer than this shows its start and end


def console(env: Environment) -> Console:
    """A console on the environment's stderr: its tty-ness, colour and width, one line per line."""
    return Console(
        file=env.stderr,
        force_terminal=env.stderr_isatty,
        no_color=not env.colour,
        width=env.width,
        highlight=False,
        # On a terminal, lines fold between words to its width; elsewhere (a log) a line stays one line
        soft_wrap=not env.stderr_isatty,
        _environ=dict(env.variables),
    )


def error_line(failure: Failure) -> str:
    """``xfer: message``, one line, with whatever a peer wrote in it escaped; red only for
    what went wrong, not for an ordinary stop."""
    style = "bold" if failure.calm else "bold red"
    return f"[{style}]xfer:[/{style}] {display_name(failure.message, ERROR_CHARS)}"


class RichDisplay(_Emits):
    """Progress bars and short lines on stderr, for people."""

    def __init__(self, env: Environment, *, role: str = "send") -> None:
        self.console = console(env)
        self.colour = env.colour
        # The QR code carries its own colours unless NO_COLOR: they make it scan on light and dark
        # terminals alike, also when stderr reaches the terminal through a pipe (`2>&1 | tee log`).
        self.qr_colour = not env.get("NO_COLOR") and env.get("TERM") != "dumb"
        self.role = role
        self.peers: dict[int, str] = {}
        self.progress: Progress | None = None
        self.tasks: dict[int, TaskID] = {}
        self.peer_tasks: dict[int, TaskID] = {}
        self.finished: set[int] = set()  # files whose bar is complete
        self._width = 10
        self.total_task: TaskID | None = None
        self._pending: tuple[list[dict[str, Any]], int] = ([], 0)  # the offer shown, until accepted
        self.wanted = 1  # send --receivers N: the receivers it waits for
        self.joined = 0

    # -- helpers ------------------------------------------------------------------

    def say(self, text: str) -> None:
        self._print(text)

    def _print(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            self.console.print(text)

    def _peer(self, peer: Mapping[str, Any]) -> str:
        name = self.peers.get(peer.get("id", 0))
        if name is None:
            name = display_name(peer.get("name") or peer.get("role") or "a peer", 60)
            if peer.get("client", "").startswith("xfer/"):
                name += " (xfer)"
            if "id" in peer:
                self.peers[peer["id"]] = name
        return name

    def _bars(self, files: list[dict[str, Any]], total: int) -> None:
        if self.progress is not None:
            return
        from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
        from rich.table import Column

        # One line per bar at any width from 40 columns: narrower, the names get shorter and
        # the speed and time columns go (the bar keeps at least 10 cells).
        cols = self.console.width
        columns: list[str | ProgressColumn] = [
            TextColumn("{task.description}", justify="left", table_column=Column(no_wrap=True)),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=10)),
            SizeColumn(table_column=Column(no_wrap=True)),
        ]
        if cols >= 64:
            columns.append(speed_column())
        if cols >= 76:
            columns.append(TimeRemainingColumn(table_column=Column(no_wrap=True)))
        self.progress = Progress(*columns, console=self.console, transient=False)
        self.progress.start()
        longest = 28 if cols >= 80 else max(6, cols - 27)  # the rest: " ✓", the bar, "3.0/3.0 MB"
        width = self._width = min(max(len(f["name"]) for f in files), longest) if files else 10
        for f in files:
            label = display_name(f["name"], width).ljust(width)
            if f.get("kind") == "dir":
                continue
            self.tasks[f["index"]] = self.progress.add_task(label, total=f["size"], start=False)
        if len(files) > 1:
            self.total_task = self.progress.add_task("Total".ljust(width), total=total or 1)

    # -- events ---------------------------------------------------------------------

    def show(self, event: Event) -> None:
        if isinstance(event, RoomOpened):
            self.on_room(event)
            return
        handler = getattr(self, "on_" + event.name.replace("-", "_"), None)
        if handler is not None:
            handler(**event.fields)

    def on_room(self, room: RoomOpened) -> None:
        wide = self.console.width >= 64
        gap = "        " if wide else "\n"
        self.console.print(f"Room  [bold]{room.code}[/bold]{gap}[dim](expires when everyone leaves)[/dim]")
        self.console.print()
        # The command and the link are never folded by us: a terminal's own wrap keeps each one
        # line to copy (the link is long: the secret after # is 43 characters)
        if wide and len(room.command) + 22 <= self.console.width:
            self.console.print(f"On another computer:  [bold]{room.command}[/bold]", soft_wrap=True)
        else:
            self.console.print(f"On another computer:\n  [bold]{room.command}[/bold]", soft_wrap=True)
        self.console.print("On a phone: scan this, or open" if room.qr else "On a phone, open")
        self.console.print(f"  {room.url}", soft_wrap=True, highlight=False, markup=False)
        if room.qr:
            from .qr import qr_text

            self.console.print()
            self.console.file.write(qr_text(room.url, colour=self.qr_colour))
            self.console.file.flush()
        self.console.print()

    def on_joined(self, code: str, peers: list[dict[str, Any]]) -> None:
        # Peers count once they proved the code (their own "joined" line follows), so this
        # line says what happens meanwhile rather than "nobody".
        names = ", ".join(self._peer(p) for p in peers)
        self.say(f"Joined room {code} · {names or 'checking the code with the other side…'}")

    def on_warning(self, message: str) -> None:
        self.say(f"[yellow]{display_name(message, 300)}[/yellow]")

    def on_wrong_code(self, attempts: int, limit: int, **f: Any) -> None:
        # ``secured`` has no line here: --verify asks its question, and --json carries it.
        left = limit - attempts
        self.say(
            f"[yellow]Someone tried a wrong code ({attempts} of {limit}); "
            f"after {left} more the code is spent and the room closes[/yellow]"
        )

    def on_waiting(self, reason: str, **f: Any) -> None:
        if reason == "receiver-back":
            count = f.get("receivers", 1)
            who = "the receiver" if count == 1 else f"the {count} receivers"
            self.say(f"[dim]Waiting up to {f.get('seconds', 0):.0f} s for {who} that left to come back…[/dim]")
            return
        if reason == "sender-confirm":
            self.say(
                "[dim]Every file is here and verified. The sender lost its connection before it heard so: "
                f"waiting up to {f.get('seconds', 0):.0f} s for it to come back and hear it (Ctrl-C is safe now)…[/dim]"
            )
            return
        if reason == "receiver" and f.get("receivers", 1) > 1:  # --receivers N: joins count up to N
            self.wanted = f["receivers"]
            self.say(f"[dim]Waiting for {self.wanted} receivers…[/dim]")
            return
        self.say("[dim]Waiting for a receiver…[/dim]" if reason == "receiver" else "[dim]Waiting for an offer…[/dim]")

    def on_peer_joined(self, peer: dict[str, Any]) -> None:
        count = ""
        if self.wanted > 1 and self.progress is None and peer.get("role") != "sender":
            self.joined += 1
            count = f" ({min(self.joined, self.wanted)} of {self.wanted})"
        self.say(f"[green]✓[/green] {self._peer(peer)} joined{count}")

    def on_peer_left(self, peer: dict[str, Any]) -> None:
        if peer.get("id") in self.peers:
            self.say(f"[dim]{self.peers[peer['id']]} left[/dim]")

    def on_offer(self, files: list[dict[str, Any]], total: int, **f: Any) -> None:
        if self.role == "send":
            if self.progress is not None:
                return  # offered again after an interruption: the bars are already there
            to = ", ".join(self._peer(p) for p in (f.get("peers") or [f.get("to") or {}]))
            self.say(f"Offering {_describe(files, total)} to {to}…")
            self._bars(files, total)
            return
        self._pending = (files, total)
        who = self._peer(f.get("from") or {})
        self.console.print(f"{who} offers {_describe(files, total)}:")
        hidden = set(f.get("hidden") or ())
        shown = [x for x in files if x.get("kind") != "dir" and x["name"] not in hidden]
        shown = shown or [x for x in files if x["name"] not in hidden]
        most = max(6, min(40, self.console.width - 14))  # "  NAME  SIZE" in one line
        width = min(max((len(x["name"]) for x in files), default=1), most)
        for x in shown[:20]:
            self.console.print(f"  {display_name(x['name'], most).ljust(width)}  {_size(x):>9}")
        if len(shown) > 20:
            self.console.print(f"  … and {len(shown) - 20} more")
        if hidden:  # every one by name, never behind "and N more": they run code in a home folder
            self.console.print(f"[yellow]  Hidden entries (names starting with a dot), {len(hidden)}:[/yellow]")
            for x in files:
                if x["name"] in hidden:
                    self.console.print(f"  {display_name(x['name'], 1000).ljust(width)}  {_size(x):>9}")

    def on_turned_away(self, peer: dict[str, Any], **f: Any) -> None:
        self.say(f"[yellow]Turned away {self._peer(peer)}: this room already has its receiver[/yellow]")

    def on_other_sender(self, asking: bool, **f: Any) -> None:
        who, began = self._peer(f.get("from") or {}), self._peer(f.get("began_with") or {})
        self.say(
            f"[yellow]{who} offers the same files, but it is a different sender than the one "
            f"this transfer began with ({began})[/yellow]"
        )
        if not asking:
            self.say(f"[yellow]Refused {who}: the files come only from {began}[/yellow]")

    def on_accepted(self, resumed: int = 0, **f: Any) -> None:
        if self.role == "receive":
            self._bars(*self._pending)
        elif f.get("peer"):  # who receives: the name its sealed hi gave, after it proved the code
            self.say(f"{self._peer(f['peer'])} accepted")
        if resumed:
            self.say(f"Resuming: {human_size(resumed)} already there")

    def on_file_start(self, index: int, offset: int = 0, **f: Any) -> None:
        if self.progress is not None and index in self.tasks and index not in self.finished:
            self.progress.start_task(self.tasks[index])
            self.progress.update(self.tasks[index], completed=offset)

    def on_declined(self, peer: dict[str, Any], **f: Any) -> None:
        self.say(f"[yellow]{self._peer(peer)} declined[/yellow]")

    def on_receiver_failed(self, peer: dict[str, Any], reason: str, **f: Any) -> None:
        if reason == "left":
            self.say(f"[yellow]{self._peer(peer)} left; the others go on, and it can come back to finish[/yellow]")
        else:
            self.say(f"[yellow]{self._peer(peer)} dropped out ({display_name(reason, 200)}); the others go on[/yellow]")
        task = self.peer_tasks.pop(int(peer.get("id", 0)), None)
        if task is not None and self.progress is not None:
            self.progress.update(task, description=self.progress.tasks[task].description + " [red]✗[/red]")

    def on_interrupted(self, reason: str, at: str, **f: Any) -> None:
        if reason == "relay-lost":
            self.say(f"[yellow]Connection to the relay lost during {display_name(at, 120)}[/yellow]")
        else:
            other = "receiver" if self.role == "send" else "sender"
            self.say(f"[yellow]The {other} left during {display_name(at, 120)}; waiting for it to come back…[/yellow]")

    def on_reconnecting(self, **f: Any) -> None:
        self.say("[dim]Reconnecting…[/dim]")

    def on_reconnected(self, **f: Any) -> None:
        self.say("[green]✓[/green] Reconnected")

    def on_already_received(self, folder: str, files: list[dict[str, Any]], **f: Any) -> None:
        names = ", ".join(display_name(str(e.get("name") or e.get("path")), 80) for e in files[:5])
        more = f" and {len(files) - 5} more" if len(files) > 5 else ""
        self.say(f"[green]✓[/green] Already here: {names}{more} (received into {display_name(folder, 200)})")

    def on_resume(self, command: str, **f: Any) -> None:
        self.say(f"To resume, run:  [bold]{display_name(command, 1000)}[/bold]")

    def on_resume_discarded(self, message: str, **f: Any) -> None:
        self.say(f"[yellow]{display_name(message, 300)}[/yellow]")

    def on_resume_mismatch(self, name: str, **f: Any) -> None:
        self.say(
            f"[yellow]{display_name(name, 120)} is not what the receiver holds a part of; "
            "sending it from the start[/yellow]"
        )

    def on_progress(self, index: int, bytes: int, total_bytes: int, **f: Any) -> None:
        if self.progress is None:
            return
        for peer_id, held in (f.get("peers") or {}).items():  # one line per receiver of a fan-out
            task = self.peer_tasks.get(int(peer_id))
            if task is None:
                name = self.peers.get(int(peer_id), "a receiver")
                task = self.peer_tasks[int(peer_id)] = self.progress.add_task(
                    display_name("→ " + name, max(self._width, 6)).ljust(self._width), total=f.get("total_size") or None
                )
            self.progress.update(task, completed=held)
        if index in self.tasks and index not in self.finished:  # sent again to a receiver that came back
            self.progress.update(self.tasks[index], completed=bytes)
        if self.total_task is not None:
            self.progress.update(self.total_task, completed=total_bytes)

    def on_file_end(self, index: int, size: int, **f: Any) -> None:
        self.finished.add(index)
        if self.progress is not None and index in self.tasks:
            task = self.tasks[index]
            self.progress.start_task(task)
            self.progress.update(
                task, completed=size or 1, description=self.progress.tasks[task].description + " [green]✓[/green]"
            )

    def on_text(self, text: str, **f: Any) -> None:
        who = display_name(f.get("from", "peer"), 60)
        self._print(f"[bold]{who}:[/bold] {display_text(text)}")

    def on_done(self, files: int, bytes: int, seconds: float, **f: Any) -> None:
        if self.progress is not None:  # every receiver still listed has verified everything
            for task in self.peer_tasks.values():
                self.progress.update(task, completed=self.progress.tasks[task].total)
        self.close()
        if self.role == "send":
            who = ", ".join(self._peer(p) for p in (f.get("peers") or [f.get("peer") or {}]))
            self.say(f"Sent {_count(files)} ({human_size(bytes)}) to {who} in {seconds:.1f} s · SHA-256 verified")
        elif "texts" in f:  # texts and no offer, and the sender left: it had nothing more
            self.say(f"{display_name(f['from'], 60)} sent {_count(f['texts'], 'text')} and left")
        elif [s.get("path") for s in f.get("saved", [])] == ["-"]:
            name = display_name(f["saved"][0]["name"], 60)
            self.say(f"Wrote {name} to standard output ({human_size(bytes)}) · SHA-256 verified")
        else:
            saved = [s for s in f.get("saved", []) if s.get("kind") != "dir"]
            names = ", ".join(display_name(s["name"], 60) for s in saved[:5])
            more = f" and {files - 5} more" if files > 5 else ""
            folder = display_name(f.get("folder", "."), 120)
            self.say(f"Saved to {folder}: {names}{more} ({human_size(bytes)}) · SHA-256 verified")

    def on_text_sent(self, to: list[dict[str, Any]], **f: Any) -> None:
        self.say("Sent the text to " + ", ".join(self._peer(p) for p in to))

    def error(self, failure: Failure) -> None:
        self.close()
        self.console.print(error_line(failure))

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.tasks, self.peer_tasks, self.total_task = {}, {}, None
            self.finished = set()


def _describe(files: list[dict[str, Any]], total: int) -> str:
    """``3 files, 27.6 MB`` (folders are not counted as files; a stream has no size yet)."""
    count = sum(1 for f in files if f.get("kind") != "dir")
    folders = sum(1 for f in files if f.get("kind") == "dir")
    text = _count(count) + (f" in {folders} folder{'s' if folders != 1 else ''}" if folders else "")
    if any(f.get("size") is None for f in files):
        return text + (f", {human_size(total)} and a stream" if total else ", a stream")
    return f"{text}, {human_size(total)}"


def _size(entry: dict[str, Any]) -> str:
    if entry.get("kind") == "dir":
        return "folder"
    return "stream" if entry["size"] is None else human_size(entry["size"])


def _count(n: int, what: str = "file") -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


class SpeedColumn(TransferSpeedColumn):
    """rich's speed column in the units of ``human_size`` (rich's says "404 bytes/s"), blank
    instead of "?" where there is no speed to show: a small file sent in one chunk is done
    before rich has measured any."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        return Text(f"{human_size(speed)}/s", style="progress.data.speed")  # "404 B/s", as sizes are shown


class SizeColumn(ProgressColumn):
    """``1.5/3.0 MB``, ``6/6 B``: the sizes as the offer shows them (``human_size``)."""

    def render(self, task: Task) -> Text:
        done = human_size(task.completed)
        if task.total is None:
            return Text(done, style="progress.download")
        total = human_size(task.total)
        number, unit = done.split(" ")
        if total.endswith(" " + unit):
            return Text(f"{number}/{total}", style="progress.download")
        return Text(f"{done}/{total}", style="progress.download")


def speed_column() -> ProgressColumn:
    return SpeedColumn()
