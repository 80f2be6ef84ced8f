"""Read and write Parquet files in the lake through pyarrow filesystems (local or S3).

Writes are atomic: on a local disk a file is written under `_tmp/` and renamed into place; on S3
an object PUT is atomic by itself. Readers therefore never see a half-written file, and writing
the same path again replaces it.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ROW_GROUP_SIZE = 256 * 1024


@dataclass(frozen=True)
class LakeFile:
    path: str  # relative to the lake root
    size: int
    mtime: datetime | None


class Lake:
    """A lake rooted at a local folder or at `s3://bucket/prefix`."""

    def __init__(
        self,
        root: str,
        *,
        s3_endpoint_url: str | None = None,
        s3_region: str | None = None,
        s3_access_key: str | None = None,
        s3_secret_key: str | None = None,
    ):
        self.root_uri = root.rstrip("/")
        if root.startswith("s3://"):
            scheme, endpoint = None, None
            if s3_endpoint_url:
                scheme, _, endpoint = s3_endpoint_url.partition("://")
            self.fs: pafs.FileSystem = pafs.S3FileSystem(
                endpoint_override=endpoint,
                scheme=scheme or "https",
                region=s3_region or "us-east-1",
                access_key=s3_access_key,
                secret_key=s3_secret_key,
                allow_bucket_creation=True,
            )
            self._base = root.removeprefix("s3://").rstrip("/")
            self.is_local = False
        else:
            self.fs = pafs.LocalFileSystem()
            self._base = str(root).rstrip("/")
            self.is_local = True

    # -- paths -------------------------------------------------------------------------------
    def full_path(self, relpath: str) -> str:
        return f"{self._base}/{relpath}" if relpath else self._base

    def uri(self, relpath: str = "") -> str:
        return f"{self.root_uri}/{relpath}" if relpath else self.root_uri

    # -- writing -----------------------------------------------------------------------------
    def write_parquet(self, relpath: str, data: pa.Table | pa.RecordBatchReader) -> LakeFile:
        """Write `data` to `relpath` atomically, replacing any file already there.

        A RecordBatchReader is streamed batch by batch, so memory stays bounded however large it is.
        """
        target = self.full_path(relpath)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        if not self.is_local:
            _write(data, target, self.fs)
            return self.stat(relpath)
        tmp_dir = self.full_path("_tmp")
        self.fs.create_dir(tmp_dir, recursive=True)
        tmp = f"{tmp_dir}/{uuid.uuid4().hex}.parquet"
        try:
            _write(data, tmp, self.fs)
            self.fs.move(tmp, target)
        finally:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
        return self.stat(relpath)

    def read_metadata(self, relpath: str) -> dict[str, str]:
        """The key-value metadata of a Parquet file's schema (empty when there is none)."""
        with self.fs.open_input_file(self.full_path(relpath)) as f:
            meta = pq.read_schema(f).metadata or {}
        return {k.decode(): v.decode() for k, v in meta.items()}

    def row_count(self, relpath: str) -> int:
        with self.fs.open_input_file(self.full_path(relpath)) as f:
            return pq.read_metadata(f).num_rows

    def delete(self, relpath: str) -> None:
        path = self.full_path(relpath)
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            self.fs.delete_file(path)

    # -- reading -----------------------------------------------------------------------------
    def exists(self, relpath: str) -> bool:
        return self.fs.get_file_info(self.full_path(relpath)).type == pafs.FileType.File

    def stat(self, relpath: str) -> LakeFile:
        info = self.fs.get_file_info(self.full_path(relpath))
        return LakeFile(relpath, info.size or 0, _utc(info.mtime))

    def list_files(self, prefix: str, suffix: str = ".parquet") -> list[LakeFile]:
        """Every file below `prefix` (recursively) whose name ends with `suffix`, sorted by path."""
        selector = pafs.FileSelector(self.full_path(prefix), recursive=True, allow_not_found=True)
        base_len = len(self._base) + 1
        files = [
            LakeFile(info.path[base_len:], info.size or 0, _utc(info.mtime))
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.path.endswith(suffix)
        ]
        return sorted(files, key=lambda f: f.path)

    def read_parquet(self, relpaths: list[str], schema: pa.Schema) -> pa.Table:
        """Read the given files into one table of `schema` (an empty table when there are none)."""
        if not relpaths:
            return schema.empty_table()
        dataset = self.dataset(relpaths, schema)
        return dataset.to_table()

    def dataset(self, relpaths: list[str], schema: pa.Schema) -> ds.Dataset:
        """A lazy pyarrow dataset over the given files: DuckDB scans it in bounded memory."""
        return ds.dataset(
            [self.full_path(p) for p in relpaths],
            schema=schema,
            format="parquet",
            filesystem=self.fs,
        )


def _write(data: pa.Table | pa.RecordBatchReader, path: str, fs: pafs.FileSystem) -> None:
    if isinstance(data, pa.Table):
        pq.write_table(data, path, filesystem=fs, row_group_size=ROW_GROUP_SIZE)
        return
    with pq.ParquetWriter(path, data.schema, filesystem=fs) as writer:
        for batch in data:
            writer.write_batch(batch, row_group_size=ROW_GROUP_SIZE)


def _utc(mtime: datetime | None) -> datetime | None:
    if mtime is None:
        return None
    return mtime if mtime.tzinfo else mtime.replace(tzinfo=UTC)
