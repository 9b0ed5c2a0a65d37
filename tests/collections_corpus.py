"""Collections as the field writes them, for tests: WebDataset shards (webdataset's own TarWriter), Parquet in
Hugging Face's {bytes, path} layout (pyarrow), and hand-assembled tars for what no writer would produce."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds
from PIL import Image

HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def photo_bytes(photos_dir: Path) -> dict[str, bytes]:
    """The bytes of each test photo, by file name."""
    return {p.name: p.read_bytes() for p in sorted(photos_dir.iterdir())}


def caption(name: str) -> bytes:
    return f"a caption of {name}, é ü".encode()


def write_shards(root: Path, photos: dict[str, bytes], per_shard: int) -> list[Path]:
    """img2dataset-style shards 00000.tar, 00001.tar, ...: KEY.jpg (or .png), KEY.txt and KEY.json per photo."""
    root.mkdir(parents=True, exist_ok=True)
    names, paths = list(photos), []
    for shard in range(0, len(names), per_shard):
        path = root / f"{shard // per_shard:05d}.tar"
        with wds.TarWriter(str(path), encoder=False) as writer:
            for i, name in enumerate(names[shard:shard + per_shard], start=shard):
                writer.write({"__key__": f"{i:09d}", name.rsplit(".", 1)[1]: photos[name], "txt": caption(name),
                              "json": json.dumps({"source": name}).encode()})
        paths.append(path)
    return paths


def write_hf_parquet(path: Path, cells: list, row_group_size: int = 2) -> Path:
    """A Parquet file as Hugging Face datasets write images: an `image` struct {bytes, path}, and a label."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"image": pa.array(cells, type=HF_IMAGE), "label": list(range(len(cells)))})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def jpeg(colour: str = "red", size=(48, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def raw_tar(path: Path, members: list[tuple[str, bytes | int]]) -> Path:
    """A tar assembled header by header: (name, bytes) members, and (name, size) members whose data is a
    hole of that size (a sparse file: a 'bomb' that takes no disk)."""
    with open(path, "wb") as f:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            f.write(info.tobuf(tarfile.USTAR_FORMAT))
            padded = -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            if isinstance(data, int):
                f.seek(padded, io.SEEK_CUR)
            else:
                f.write(data + b"\0" * (padded - len(data)))
        f.write(b"\0" * 2 * tarfile.BLOCKSIZE)
    return path
