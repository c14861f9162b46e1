"""The libvirt test-driver world the producer integration tests share (a helper, not a test)."""

from __future__ import annotations

from pathlib import Path

NODE_XML = Path(__file__).parent / "data" / "libvirt-node.xml"
NODE_URI = f"test://{NODE_XML.resolve()}"


def domain_xml(name: str, job_type: str | None = None, disks: int = 1) -> str:
    """A test-driver domain to define mid-run."""
    metadata = (
        f'<metadata><vmlb:job-type xmlns:vmlb="https://vmlb.dev/ns">{job_type}</vmlb:job-type></metadata>'
        if job_type
        else ""
    )
    devices = "".join(
        f"<disk type='file' device='disk'><source file='/guests/{name}-{i}.img'/>"
        f"<target dev='vd{chr(ord('a') + i)}' bus='virtio'/></disk>"
        for i in range(disks)
    )
    return (
        f"<domain type='test'><name>{name}</name><memory>524288</memory>"
        f"<os><type>hvm</type></os>{metadata}<devices>{devices}</devices></domain>"
    )
