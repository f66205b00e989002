"""GPU memory the judge shares with an executor, and the flags that hand a call back and forth.

The judge allocates every input and output buffer with the CUDA virtual memory API and exports
it as a file descriptor; the executor maps it (the flag page the judge writes, read-only). Each
call is gated on the GPU: the executor's stream waits until the judge writes `go`, runs the
call, then writes `done`; the judge's stream records its own events around that span. So the
judge's clock measures the call from outside the solution's process, and the judge reads the
outputs itself, at a moment the solution does not choose.

GPU-only (cuda.bindings driver API); imported by the judge and the executor, never the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

GO, COPY_GO = 0, 4  # offsets in the flag page only the judge writes
DONE, COPIED = 0, 4  # offsets in the flag page the executor writes
FLAG_PAGE = 4096
ALIGN = 256


def _driver() -> Any:
    from cuda.bindings import driver

    return driver


def _check(result: Any) -> Any:
    if not isinstance(result, tuple):
        result = (result,)
    error = result[0]
    if int(error) != 0:
        name = getattr(error, "name", str(error))
        raise RuntimeError(f"CUDA driver call failed: {name}")
    if len(result) == 1:
        return None
    return result[1] if len(result) == 2 else result[1:]


def _prop() -> Any:
    d = _driver()
    prop = d.CUmemAllocationProp()
    prop.type = d.CUmemAllocationType.CU_MEM_ALLOCATION_TYPE_PINNED
    prop.location.type = d.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
    prop.location.id = torch.cuda.current_device()
    prop.requestedHandleTypes = d.CUmemAllocationHandleType.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR
    return prop


def _access(readonly: bool) -> Any:
    d = _driver()
    desc = d.CUmemAccessDesc()
    desc.location.type = d.CUmemLocationType.CU_MEM_LOCATION_TYPE_DEVICE
    desc.location.id = torch.cuda.current_device()
    desc.flags = d.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_READ if readonly else d.CUmemAccess_flags.CU_MEM_ACCESS_FLAGS_PROT_READWRITE
    return desc


def granularity() -> int:
    d = _driver()
    return int(_check(d.cuMemGetAllocationGranularity(_prop(), d.CUmemAllocationGranularity_flags.CU_MEM_ALLOC_GRANULARITY_MINIMUM)))


def round_up(size: int, to: int) -> int:
    return (size + to - 1) // to * to


@dataclass
class Mapping:
    """A mapped allocation: its device address, size, and (for the exporter) the fd to share."""

    ptr: int
    size: int
    handle: Any
    fd: int | None = None

    def release(self) -> None:
        d = _driver()
        try:
            _check(d.cuMemUnmap(d.CUdeviceptr(self.ptr), self.size))
            _check(d.cuMemAddressFree(d.CUdeviceptr(self.ptr), self.size))
            _check(d.cuMemRelease(self.handle))
        except RuntimeError:
            pass  # a dead context frees everything anyway
        if self.fd is not None:
            import os

            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


def allocate(size: int) -> Mapping:
    """Device memory of at least `size` bytes, mapped here read-write and exportable as an fd."""
    d = _driver()
    torch.cuda.init()
    size = round_up(max(size, 1), granularity())
    handle = _check(d.cuMemCreate(size, _prop(), 0))
    ptr = _check(d.cuMemAddressReserve(size, 0, 0, 0))
    _check(d.cuMemMap(ptr, size, 0, handle, 0))
    _check(d.cuMemSetAccess(ptr, size, [_access(False)], 1))
    fd = _check(d.cuMemExportToShareableHandle(handle, d.CUmemAllocationHandleType.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0))
    return Mapping(ptr=int(ptr), size=size, handle=handle, fd=int(fd))


def import_fd(fd: int, size: int, *, readonly: bool = False) -> Mapping:
    """Map an allocation another process exported."""
    d = _driver()
    torch.cuda.init()
    handle = _check(d.cuMemImportFromShareableHandle(fd, d.CUmemAllocationHandleType.CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR))
    ptr = _check(d.cuMemAddressReserve(size, 0, 0, 0))
    _check(d.cuMemMap(ptr, size, 0, handle, 0))
    _check(d.cuMemSetAccess(ptr, size, [_access(readonly)], 1))
    import os

    os.close(fd)
    return Mapping(ptr=int(ptr), size=size, handle=handle)


class _Interface:
    def __init__(self, ptr: int, nbytes: int) -> None:
        self.__cuda_array_interface__ = {"shape": (nbytes,), "typestr": "|u1", "data": (ptr, False), "version": 3, "strides": None}


def tensor_at(ptr: int, nbytes: int, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    """A torch tensor over raw device memory (bf16 and fp8 go through a byte view)."""
    raw = torch.as_tensor(_Interface(ptr, nbytes), device=torch.device("cuda", torch.cuda.current_device()))
    return raw.view(dtype).view(shape) if shape else raw.view(dtype).view(())


def wait_at_least(stream: int, address: int, value: int) -> None:
    """Make `stream` wait (on the GPU) until the 32-bit flag at address is >= value."""
    d = _driver()
    _check(d.cuStreamWaitValue32(d.CUstream(stream), d.CUdeviceptr(address), value, d.CUstreamWaitValue_flags.CU_STREAM_WAIT_VALUE_GEQ))


def write_flag(stream: int, address: int, value: int) -> None:
    """Have `stream` write value into the 32-bit flag at address once its earlier work is done."""
    d = _driver()
    _check(d.cuStreamWriteValue32(d.CUstream(stream), d.CUdeviceptr(address), value, 0))


def layout_tensors(specs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Offsets for tensors given as {name, dtype, shape, nbytes}; returns them with the total size."""
    offset = 0
    placed = []
    for spec in specs:
        offset = round_up(offset, ALIGN)
        placed.append({**spec, "offset": offset})
        offset += max(int(spec["nbytes"]), 1)
    return placed, round_up(offset, ALIGN)
