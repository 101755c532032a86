"""Key events from a keyboard-wedge scanner (evdev) to barcode text, US layout.

The scanner "types" each barcode; we rebuild the text from key-down events with the shift
and ctrl state, so that Ctrl+] (how scanners type the GS1 group separator, ASCII 29) and
shifted characters come out right. Key repeat (value 2) is ignored: a scanner never holds a
key, so a repeat is the kernel's autorepeat and would double a character.
"""

from __future__ import annotations

from evdev import InputEvent, ecodes

UNMAPPED = "\ufffd"  # stands in for a key with no US-layout character; the decoder rejects it
MAX_SCAN_CHARS = 600  # more than any barcode we accept; a missing suffix must not grow without bound

_KEY_UP, _KEY_DOWN, _KEY_REPEAT = 0, 1, 2


def _build_keymap() -> dict[int, tuple[str, str]]:
    keymap: dict[int, tuple[str, str]] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        keymap[ecodes.ecodes[f"KEY_{letter.upper()}"]] = (letter, letter.upper())
    for digit, shifted in zip("1234567890", "!@#$%^&*()", strict=True):
        keymap[ecodes.ecodes[f"KEY_{digit}"]] = (digit, shifted)
        keymap[ecodes.ecodes[f"KEY_KP{digit}"]] = (digit, digit)
    for name, plain, shifted in (
        ("MINUS", "-", "_"), ("EQUAL", "=", "+"), ("LEFTBRACE", "[", "{"), ("RIGHTBRACE", "]", "}"),
        ("SEMICOLON", ";", ":"), ("APOSTROPHE", "'", '"'), ("GRAVE", "`", "~"), ("BACKSLASH", "\\", "|"),
        ("COMMA", ",", "<"), ("DOT", ".", ">"), ("SLASH", "/", "?"), ("SPACE", " ", " "),
        ("KPMINUS", "-", "-"), ("KPPLUS", "+", "+"), ("KPASTERISK", "*", "*"), ("KPSLASH", "/", "/"),
        ("KPDOT", ".", "."), ("TAB", "\t", "\t"),
    ):
        keymap[ecodes.ecodes[f"KEY_{name}"]] = (plain, shifted)
    return keymap


KEYMAP = _build_keymap()
SHIFT_KEYS = frozenset({ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT})
CTRL_KEYS = frozenset({ecodes.KEY_LEFTCTRL, ecodes.KEY_RIGHTCTRL})
# Keys that only change state or that scanners send around a barcode; never text.
IGNORED_KEYS = frozenset({ecodes.KEY_LEFTALT, ecodes.KEY_RIGHTALT, ecodes.KEY_NUMLOCK, ecodes.KEY_LEFTMETA,
                          ecodes.KEY_RIGHTMETA, ecodes.KEY_SCROLLLOCK})
SUFFIX_KEYS = {
    "enter": frozenset({ecodes.KEY_ENTER, ecodes.KEY_KPENTER}),
    "tab": frozenset({ecodes.KEY_TAB}),
}


class KeyDecoder:
    """Turns a stream of evdev events into complete scans, one per suffix key."""

    def __init__(self, suffix: str = "enter") -> None:
        self._suffix = SUFFIX_KEYS[suffix]
        self._chars: list[str] = []
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._capslock = False

    def feed(self, event: InputEvent) -> str | None:
        """Take one event; return the barcode text when this event ends a scan."""
        if event.type != ecodes.EV_KEY or event.value == _KEY_REPEAT:
            return None
        code, down = event.code, event.value == _KEY_DOWN
        if code in SHIFT_KEYS or code in CTRL_KEYS:
            held = self._shift if code in SHIFT_KEYS else self._ctrl
            if down:
                held.add(code)
            else:
                held.discard(code)
            return None
        if not down or code in IGNORED_KEYS:
            return None
        if code == ecodes.KEY_CAPSLOCK:
            self._capslock = not self._capslock
            return None
        if code in self._suffix:
            return self.flush()
        self._chars.append(self._char(code))
        if len(self._chars) >= MAX_SCAN_CHARS:
            return self.flush()  # the decoder rejects it as too long: the suffix setting is wrong
        return None

    def flush(self) -> str | None:
        """End the scan in progress (suffix seen, or the device went away)."""
        text, self._chars = "".join(self._chars), []
        return text or None

    def _char(self, code: int) -> str:
        pair = KEYMAP.get(code)
        if pair is None:
            return UNMAPPED
        plain, shifted = pair
        shift = bool(self._shift)
        if self._capslock and plain.isalpha():
            shift = not shift
        char = shifted if shift else plain
        if self._ctrl:
            # Ctrl+@..Ctrl+_ are the ASCII control characters; Ctrl+] is GS (29), the GS1 separator.
            upper = char.upper()
            return chr(ord(upper) - 64) if "@" <= upper <= "_" else UNMAPPED
        return char


def text_to_events(text: str, suffix: str = "enter", sec: int = 0) -> list[InputEvent]:
    """The key events a US-layout scanner sends for `text` (tests, the simulator and the bench use it)."""
    reverse: dict[str, tuple[int, bool]] = {}
    for code, (plain, shifted) in sorted(KEYMAP.items()):
        if code >= ecodes.KEY_KP7 and plain.isdigit():
            continue  # type digits on the main row, as scanners do
        reverse.setdefault(plain, (code, False))
        reverse.setdefault(shifted, (code, True))
    events: list[InputEvent] = []

    def key(code: int, value: int) -> None:
        events.append(InputEvent(sec, len(events), ecodes.EV_KEY, code, value))
        events.append(InputEvent(sec, len(events), ecodes.EV_SYN, ecodes.SYN_REPORT, 0))

    for char in text:
        modifiers: list[int] = []
        if ord(char) < 32 and char != "\t":
            modifiers.append(ecodes.KEY_LEFTCTRL)
            code, shift = reverse[chr(ord(char) + 64).lower()]
        else:
            code, shift = reverse[char]
        if shift:
            modifiers.append(ecodes.KEY_LEFTSHIFT)
        for modifier in modifiers:
            key(modifier, _KEY_DOWN)
        key(code, _KEY_DOWN)
        key(code, _KEY_UP)
        for modifier in reversed(modifiers):
            key(modifier, _KEY_UP)
    end = min(SUFFIX_KEYS[suffix])
    key(end, _KEY_DOWN)
    key(end, _KEY_UP)
    return events
