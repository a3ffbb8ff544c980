"""The python sandbox's seccomp filter: a classic-BPF deny-list bubblewrap loads (``--seccomp``).

The namespaces and the dropped capabilities are the boundary; this filter narrows the kernel
surface behind it. It refuses (EPERM) the calls that only matter for escaping or inspecting a
sandbox: ptrace and cross-process memory access, every mount and namespace call (``clone`` with a
``CLONE_NEW*`` flag included), keyrings, BPF, perf, io_uring (whose operations bypass seccomp),
module and kexec loading, clock and host-name changes. ``clone3`` answers ENOSYS so that the C
library falls back to ``clone``, whose flags the filter can read. Calls of a foreign ABI (i386
``int 0x80``, x32) are refused as a whole.

Tables exist for x86_64 and aarch64 (numbers from the kernel's ``unistd`` headers); on another
machine :func:`deny_list_filter` returns None and the sandbox runs without the filter.
"""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["deny_list_filter"]

_DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "mount", "umount2",
    "pivot_root", "chroot", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "unshare", "setns", "open_by_handle_at", "name_to_handle_at", "keyctl",
    "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "fanotify_init",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module", "syslog", "acct", "swapon", "swapoff",
    "reboot", "quotactl", "vhangup", "sethostname", "setdomainname", "settimeofday",
    "clock_settime", "adjtimex", "clock_adjtime", "migrate_pages", "move_pages",
)

_X86_64 = {
    "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312,
    "pidfd_getfd": 438, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442, "unshare": 272, "setns": 308, "open_by_handle_at": 304,
    "name_to_handle_at": 303, "keyctl": 250, "add_key": 248, "request_key": 249, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "fanotify_init": 300, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "kexec_load": 246, "kexec_file_load": 320,
    "init_module": 175, "finit_module": 313, "delete_module": 176, "syslog": 103, "acct": 163,
    "swapon": 167, "swapoff": 168, "reboot": 169, "quotactl": 179, "vhangup": 153,
    "sethostname": 170, "setdomainname": 171, "settimeofday": 164, "clock_settime": 227,
    "adjtimex": 159, "clock_adjtime": 305, "migrate_pages": 256, "move_pages": 279,
    "clone": 56, "clone3": 435,
}
_X86_64_EXTRA = (172, 173, 134, 212)  # iopl, ioperm, uselib, lookup_dcookie: x86_64 only

_AARCH64 = {
    "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
    "pidfd_getfd": 438, "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442, "unshare": 97, "setns": 268, "open_by_handle_at": 265,
    "name_to_handle_at": 264, "keyctl": 219, "add_key": 217, "request_key": 218, "bpf": 280,
    "perf_event_open": 241, "userfaultfd": 282, "fanotify_init": 262, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "kexec_load": 104, "kexec_file_load": 294,
    "init_module": 105, "finit_module": 273, "delete_module": 106, "syslog": 116, "acct": 89,
    "swapon": 224, "swapoff": 225, "reboot": 142, "quotactl": 60, "vhangup": 58,
    "sethostname": 161, "setdomainname": 162, "settimeofday": 170, "clock_settime": 112,
    "adjtimex": 171, "clock_adjtime": 266, "migrate_pages": 238, "move_pages": 239,
    "clone": 220, "clone3": 435,
}

# machine -> (AUDIT_ARCH_*, syscall table, extra denied numbers, first number of a foreign ABI)
_ARCHES: dict[str, tuple[int, dict[str, int], tuple[int, ...], int | None]] = {
    "x86_64": (0xC000003E, _X86_64, _X86_64_EXTRA, 0x40000000),  # x32 numbers start here
    "aarch64": (0xC00000B7, _AARCH64, (), None),
}

_CLONE_NEW_FLAGS = 0x7E020000
"""CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (CLONE_NEWTIME shares
its bit with the exit signal in ``clone`` and only works through ``unshare``/``clone3``)."""

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16  # struct seccomp_data; arg0's low word


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def deny_list_filter(machine: str | None = None) -> bytes | None:
    """The compiled filter for ``machine`` (default: this one), or None without a table for it."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, table, extra, foreign_from = arch
    deny = _RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, _OFFSET_ARCH),
        _insn(_JEQ_K, audit_arch, jt=1),
        _insn(_RET_K, deny),
        _insn(_LD_W_ABS, _OFFSET_NR),
    ]
    if foreign_from is not None:
        prog += [_insn(_JGE_K, foreign_from, jf=1), _insn(_RET_K, deny)]
    for nr in sorted({table[name] for name in _DENIED} | set(extra)):
        prog += [_insn(_JEQ_K, nr, jf=1), _insn(_RET_K, deny)]
    prog += [
        _insn(_JEQ_K, table["clone3"], jf=1),
        _insn(_RET_K, _RET_ERRNO | errno.ENOSYS),
        _insn(_JEQ_K, table["clone"], jf=4),
        _insn(_LD_W_ABS, _OFFSET_ARG0),
        _insn(_JSET_K, _CLONE_NEW_FLAGS, jf=1),
        _insn(_RET_K, deny),
        _insn(_RET_K, _RET_ALLOW),
        _insn(_RET_K, _RET_ALLOW),
    ]
    return b"".join(prog)
