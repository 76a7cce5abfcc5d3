"""The C-STORE handler: name the file, write it durably, answer with DCMTK's statuses.

Statuses (SPEC §5.3, with our data-safety rules of DESIGN §4):

=======  ============================================================================
0x0000   stored, durable on disk (or ``--ignore``)
0xA700   out of resources: the file could not be created or written, or the data set
         cannot be converted to the requested output transfer syntax
0xA900   the data set's SOP Class/Instance UID differs from the request
0xC000   cannot understand: the data set cannot be parsed, lacks its UIDs, or the
         request's SOP Instance UID is not a UID that may name a file
=======  ============================================================================

Unlike DCMTK, a file is never left behind after a failure status: the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import struct
import time
from datetime import date, datetime, timedelta
from typing import Any, BinaryIO, cast

from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE

from storescpd.fsio import (
    AtomicFile,
    SpareFile,
    copy_stream,
    fsync_directory,
    make_directories,
    start_writeback,
)
from storescpd.naming import (
    SHORT_NAME_ATTEMPTS,
    TimeNamer,
    instance_file_name,
    log_code_for,
    prefix_for,
    series_date_folder,
    short_unique_name,
    system_time_name,
    unique_file_name,
    within,
)
from storescpd.options import Options
from storescpd.studydirs import (
    conc_studies_name,
    patient_folder_name,
    patient_name_warning,
    study_uid_name,
)
from storescpd.studyruns import StudyRuns
from storescpd.worker.dimse import SpillingBuffer, Stream
from storescpd.worker.encoding import (
    ConversionImpossible,
    Identity,
    OutputFormat,
    UnreadableDataset,
    identity_as_received,
    kept_as_received,
    write_normal,
)
from storescpd.worker.meta import (
    BIT_PRESERVING_VERSION_NAME,
    IMPLEMENTATION_VERSION_NAME,
    preamble_and_meta,
)

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
IN_MEMORY_LIMIT = 1 << 20  # data sets up to this size are parsed from memory, larger from disk


class Refused(Exception):
    """A store that must be answered with ``status`` before anything is written."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Storage:
    """Stores received data sets as the options say; one instance per serving process."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.directory = opts.output_directory
        self.format = OutputFormat(
            write_xfer=opts.write_xfer,
            enable_new_vr=opts.enable_new_vr,
            group_length=opts.group_length,
            length_explicit=opts.length_explicit,
            padding=opts.padding,
            convert_un=opts.convert_un,
            compression_level=opts.compression_level,
            write_file=opts.write_file,
        )
        self.spare = SpareFile(self.directory)  # the next file, made while the peer sends
        self.time_namer = TimeNamer()
        self.started = int(time.time())  # the first half of dcmrecv's +fsu names
        self.last_path = ""  # the last file name chosen, for --exec-on-reception's #f
        self.runs = StudyRuns(self.directory) if opts.sort else None
        # DCMTK's single process ends a study when an object of another study arrives; with
        # --fork or a pool the coordinator decides, per sender (see storescpd.eostudy).
        self.ends_runs_itself = not opts.fork and not opts.workers
        self.last_study = ""
        self.last_folder = ""  # for #p: the folder of the last object
        self.last_folder_name = ""
        self.last_stored: tuple[str, str, str] | None = None  # (study, path, folder) if sorted

    def store(self, event: evt.Event) -> int:
        """Handle ``EVT_C_STORE``; the returned status is sent only after this returns."""
        self.last_stored = None
        req = cast(C_STORE, event.request)
        sop_class = str(req.AffectedSOPClassUID or "")
        sop_instance = str(req.AffectedSOPInstanceUID or "")
        log.info("Received Store Request (MsgID %s, %s)", req.MessageID, log_code_for(sop_class))
        if self.opts.ignore:
            return SUCCESS
        try:
            path = self._path_for(sop_class, sop_instance)
        except Refused as refusal:
            log.error("%s", refusal)
            return refusal.status
        self.last_path = path
        calling_ae = str(event.assoc.requestor.ae_title or "").strip()
        transfer_syntax = str(event.context.transfer_syntax)
        received = req.DataSet
        try:
            if isinstance(received, SpillingBuffer) and isinstance(received.stream, StreamedFile):
                return self._write_streamed(received.stream, path, calling_ae)
            if isinstance(received, SpillingBuffer):
                src = received.data_set()
                return self._write(src, path, sop_class, sop_instance, transfer_syntax, calling_ae)
            with open(event.dataset_path, "rb") as spool:
                src = _data_set_of(spool)
                return self._write(src, path, sop_class, sop_instance, transfer_syntax, calling_ae)
        except OSError as err:
            log.error("cannot write DICOM file: %s: %s", path, err)
            return OUT_OF_RESOURCES

    def _path_for(self, sop_class: str, sop_instance: str) -> str:
        prefix = prefix_for(sop_class)
        ext = self.opts.filename_extension
        if self.opts.dcmrecv and not (sop_class and sop_instance):
            raise Refused(CANNOT_UNDERSTAND, "cannot generate a file name: the request lacks "
                          "its SOP Class or Instance UID")  # fmt: skip
        if self.opts.short_unique_names:
            name = self._short_name(self.directory, prefix)
        elif self.opts.system_time_names:
            name = system_time_name(prefix, ext, datetime.now())
        elif self.opts.timenames:
            name = self.time_namer.name(prefix, ext, datetime.now())
        elif self.opts.unique_filenames:
            name = unique_file_name(prefix, str(generate_uid()), ext)
        else:
            try:
                name = instance_file_name(prefix, sop_instance, ext)
            except ValueError:
                raise Refused(
                    CANNOT_UNDERSTAND,
                    f"refusing to store: SOP Instance UID {sop_instance!r} is not a valid UID",
                ) from None
        path = os.path.join(self.directory, name)
        if not within(self.directory, path):
            raise Refused(CANNOT_UNDERSTAND, f"refusing to store outside {self.directory}: {name}")
        return path

    def _short_name(self, folder: str, prefix: str) -> str:
        """A ``+fsu`` name no file in ``folder`` has yet (dcmrecv draws up to 1024 times)."""
        ext = self.opts.filename_extension
        for _ in range(SHORT_NAME_ATTEMPTS):
            name = short_unique_name(prefix, self.started, secrets.randbits(32), ext)
            if not os.path.lexists(os.path.join(folder, name)):
                return name
        raise Refused(OUT_OF_RESOURCES, f"cannot generate a unique file name in {folder}")

    def _series_date_path(self, identity: Identity, path: str, prefix: str) -> str:
        """dcmrecv's ``+ssd``: the path in ``data/YYYY/MM/DD`` (or ``undef/<today>``),
        whose folders are made as needed."""
        folder = os.path.join(self.directory, series_date_folder(identity.series_date,
                                                                 date.today()))  # fmt: skip
        try:
            make_directories(folder, sync=not self.opts.no_sync)
        except OSError as err:
            raise Refused(OUT_OF_RESOURCES, f"cannot create directory {folder}: {err}") from err
        name = os.path.basename(path)
        if self.opts.short_unique_names:
            name = self._short_name(folder, prefix)
        return os.path.join(folder, name)

    def _write(
        self,
        src: BinaryIO,
        path: str,
        sop_class: str,
        sop_instance: str,
        transfer_syntax: str,
        calling_ae: str,
    ) -> int:
        log.info("storing DICOM file: %s", path)
        with AtomicFile(path, sync=not self.opts.no_sync, spare=self.spare) as target:
            assert target.file is not None
            identity: Identity | None = None
            if self.opts.bit_preserving:
                if self.opts.write_file:
                    target.file.write(
                        preamble_and_meta(
                            sop_class,
                            sop_instance,
                            transfer_syntax,
                            calling_ae,
                            BIT_PRESERVING_VERSION_NAME,
                        )
                    )
                copy_stream(src, target.file)
            else:
                try:
                    identity = write_normal(
                        src, transfer_syntax, target.file, self.format, self._source_ae(calling_ae)
                    )
                except UnreadableDataset as err:
                    log.error("cannot understand data set for %s: %s", path, err)
                    return CANNOT_UNDERSTAND
                except ConversionImpossible as err:
                    log.error("cannot write DICOM file: %s: %s", path, err)
                    return OUT_OF_RESOURCES
            return self._place(target, identity, path, sop_class, sop_instance)

    def _source_ae(self, calling_ae: str) -> str:
        # dcmrecv's normal mode writes no Source AE Title (0002,0016); +B does
        return "" if self.opts.dcmrecv else calling_ae

    def _place(
        self,
        target: AtomicFile,
        identity: Identity | None,
        path: str,
        sop_class: str,
        sop_instance: str,
    ) -> int:
        """Check a written file (``identity``: of its data set, None in bit-preserving mode)
        against the request, choose its folder and make it durable under its name."""
        if identity is not None:
            # dcmrecv does not compare the data set with the request (SPEC §12.4)
            if not self.opts.dcmrecv:
                status = self._check_identity(identity, sop_class, sop_instance, path)
                if status != SUCCESS:
                    return status
            if self.opts.series_date_subdir:
                try:
                    path = self._series_date_path(identity, path, prefix_for(sop_class))
                except Refused as refusal:
                    log.error("%s", refusal)
                    return refusal.status
            if self.runs is not None:
                try:
                    path = self._sorted_path(identity, path)
                except Refused as refusal:
                    log.error("%s", refusal)
                    return refusal.status
        target.commit(path)
        self.last_path = path
        if self.opts.dcmrecv:
            log.info("Stored received object to file: %s", path)
        if self.runs is not None:
            self.last_stored = (self.last_study, path, self.last_folder_name)
        if target.replaced_existing:
            log.warning("DICOM file already exists, overwriting: %s", path)
        return SUCCESS

    def open_stream(self, request: C_STORE, transfer_syntax: str, calling_ae: str) -> Stream | None:
        """The output file for ``request``'s data set, to be written while it arrives (called
        once it is too large to keep in memory), when the file can be the data set as received
        after the file meta the request predicts; None (a spool file, then a copy): options
        that rewrite the data set, a request without UIDs, a file that cannot be made now."""
        sop_class = str(request.AffectedSOPClassUID or "")
        sop_instance = str(request.AffectedSOPInstanceUID or "")
        opts = self.opts
        if opts.ignore or not (sop_class and sop_instance):
            return None
        if opts.bit_preserving:
            version = BIT_PRESERVING_VERSION_NAME
            source_ae = calling_ae
        elif kept_as_received(transfer_syntax, self.format):
            version = IMPLEMENTATION_VERSION_NAME
            source_ae = self._source_ae(calling_ae)
        else:
            return None
        meta = b""
        if opts.write_file:
            meta = preamble_and_meta(sop_class, sop_instance, transfer_syntax, source_ae, version)
        # Named for the object's folder only once it is stored: made in -od, moved from there.
        target = AtomicFile(
            os.path.join(self.directory, STREAM_NAME),
            sync=not opts.no_sync,
            spare=self.spare,
            buffering=STREAM_BUFFER,
        )
        try:
            target.__enter__()
            return StreamedFile(target, meta, sop_class, sop_instance, transfer_syntax)
        except OSError as err:
            target.discard()
            log.debug("cannot write %s while it arrives: %s", sop_instance, err)
            return None

    def _write_streamed(self, stream: StreamedFile, path: str, calling_ae: str) -> int:
        """Store a data set written to its file while it arrived: kept as it is when what it
        holds confirms the file meta written first, else written anew from it (the full
        parser decides how)."""
        if stream.error is not None:
            log.error("cannot write DICOM file: %s: %s", path, stream.error)
            return OUT_OF_RESOURCES
        identity = None
        if not self.opts.bit_preserving:
            identity = stream.identity(self.format)
            if identity is None:
                with stream.reader() as src:
                    return self._write(
                        src, path, stream.sop_class, stream.sop_instance,
                        stream.transfer_syntax, calling_ae,
                    )  # fmt: skip
        log.info("storing DICOM file: %s", path)
        try:
            return self._place(stream.target, identity, path, stream.sop_class,
                               stream.sop_instance)  # fmt: skip
        finally:
            stream.discard()  # unless committed

    def _sorted_path(self, identity: Identity, path: str) -> str:
        """``-ss``/``-su``/``-sp``: the path inside the folder of the study's open run."""
        assert self.runs is not None
        study = self._uid(identity.study_instance_uid)
        if not study:
            raise Refused(CANNOT_UNDERSTAND, "element StudyInstanceUID absent in data set")
        if self.ends_runs_itself and self.last_study and study != self.last_study:
            self.runs.close(self.last_study)
        self.last_study = study
        if self.opts.sort == "patientname":
            warning = patient_name_warning(identity.patient_name, identity.specific_character_set)
            if warning:
                log.warning("%s", warning)
        try:
            folder, opened = self.runs.folder(
                study, lambda: self._folder_name(identity, study), discard=self._discard_folder
            )
        except ValueError as err:
            raise Refused(
                CANNOT_UNDERSTAND, f"could not create subdirectory for study: {err}"
            ) from None
        folder_path = os.path.join(self.directory, folder)
        if not within(self.directory, folder_path):
            raise Refused(CANNOT_UNDERSTAND, f"refusing a study folder outside -od: {folder!r}")
        if not opened and folder_path == self.last_folder:
            return os.path.join(folder_path, os.path.basename(path))  # the usual case
        try:
            os.mkdir(folder_path)
        except FileExistsError:
            if opened:
                log.info("using existing subdirectory for study: %s", folder_path)
        except OSError as err:
            raise Refused(
                CANNOT_UNDERSTAND, f"could not create subdirectory for study: {folder_path}: {err}"
            ) from err
        else:
            log.info("created new subdirectory for study: %s", folder_path)
            if not self.opts.no_sync:
                fsync_directory(self.directory)
        if opened:
            self.time_namer.reset()
        self.last_folder = folder_path
        self.last_folder_name = folder
        return os.path.join(folder_path, os.path.basename(path))

    def _folder_name(self, identity: Identity, study: str) -> str:
        if self.opts.sort == "study-uid":
            return study_uid_name(self.opts.sort_prefix, study)

        def named(when: datetime) -> str:
            if self.opts.sort == "patientname":
                return patient_folder_name(identity.patient_name, when)
            return conc_studies_name(self.opts.sort_prefix, when)

        now = datetime.now()
        if self.ends_runs_itself:
            return named(now)  # DCMTK's single process reuses an existing folder
        # Processes opening runs of different studies in the same millisecond must not share
        # a folder: a name is this run's once its folder has been made, else the next ms.
        for step in range(1000):
            name = named(now + timedelta(milliseconds=step))
            try:
                os.mkdir(os.path.join(self.directory, name))
            except FileExistsError:
                continue
            log.info("created new subdirectory for study: %s", name)
            if not self.opts.no_sync:
                fsync_directory(self.directory)  # the folder outlives a crash with its files
            return name
        raise OSError(f"no free folder name for study {study}")

    def _discard_folder(self, name: str) -> None:
        """Another process opened the same study's run first: remove the folder made for it."""
        if not self.ends_runs_itself and self.opts.sort != "study-uid":
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(self.directory, name))

    def _check_identity(
        self, identity: Identity, sop_class: str, sop_instance: str, path: str
    ) -> int:
        """DCMTK's consistency checks of the data set against the request (SPEC §5.2 step 5)."""
        ds_class = self._uid(identity.sop_class_uid)
        ds_instance = self._uid(identity.sop_instance_uid)
        if not ds_class or not ds_instance:
            log.error("bad DICOM file: %s", path)
            return CANNOT_UNDERSTAND
        if ds_class != sop_class:
            log.error(
                "SOP Class UID in data set (%s) differs from request (%s): %s",
                ds_class,
                sop_class,
                path,
            )
            return DATASET_MISMATCH
        if ds_instance != sop_instance:
            log.error(
                "SOP Instance UID in data set (%s) differs from request (%s): %s",
                ds_instance,
                sop_instance,
                path,
            )
            return DATASET_MISMATCH
        return SUCCESS

    def _uid(self, value: str | None) -> str:
        if value is None:
            return ""
        if self.opts.uid_padding and value.endswith(" "):
            return value[:-1]
        return value


def _data_set_of(spool: BinaryIO) -> BinaryIO:
    """The data set in pynetdicom's spool file, read into memory when small.

    Parsing seeks and tells a lot; on a buffered file each ``tell()`` is a system call.
    """
    offset = _data_set_offset(spool)
    size = os.fstat(spool.fileno()).st_size - offset
    spool.seek(offset)
    if size <= IN_MEMORY_LIMIT:
        return io.BytesIO(spool.read())
    return spool


def _data_set_offset(spool: BinaryIO) -> int:
    """Where the data set starts in pynetdicom's spool file (after preamble and group 2)."""
    head = spool.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:136] != b"\x02\x00\x00\x00":
        raise OSError("spool file has no file meta information")
    (group_length,) = struct.unpack("<I", head[140:144])
    return 144 + int(group_length)


STREAM_NAME = "receiving"
"""The name an object's file is made under (hidden and made unique by :class:`AtomicFile`)
while it is written as it arrives."""

STREAM_BUFFER = 1 << 20
"""A streamed file is written in pieces this large, not one system call per PDV."""

WRITEBACK_STEP = 2 << 20
"""Bytes of a streamed file after which the kernel is asked to start writing them out, so the
fsync once it is complete waits only for the last of them (bench W3 here: 2 MiB steps 30-35
objects/s against 9-24 with 8 MiB, 16-22 with 1 MiB)."""


class StreamedFile:
    """A large data set being written to its output file while it arrives: first the file
    meta its request predicts, then each fragment. A write that fails is remembered (and the
    rest of the data set dropped), to be answered once the request is complete, as a store
    that cannot be written."""

    def __init__(
        self, target: AtomicFile, meta: bytes, sop_class: str, sop_instance: str,
        transfer_syntax: str,
    ) -> None:  # fmt: skip
        self.target = target
        self.sop_class = sop_class
        self.sop_instance = sop_instance
        self.transfer_syntax = transfer_syntax
        self.offset = len(meta)
        self.error: OSError | None = None
        self._written = 0
        self._writeback_from = 0
        self.write(meta)
        if self.error is not None:
            raise self.error

    def write(self, data: Any) -> int:
        f = self.target.file
        if self.error is not None or f is None:
            return len(data)
        try:
            written = f.write(data)
            self._written += written
            if self.target.sync and self._written - self._writeback_from >= WRITEBACK_STEP:
                f.flush()
                start_writeback(f.fileno(), self._writeback_from)
                self._writeback_from = self._written
        except OSError as err:
            self.error = err
            return len(data)
        return written

    def reader(self) -> BinaryIO:
        """The data set as written, positioned at its first byte; the caller closes it."""
        assert self.target.file is not None
        self.target.file.flush()
        reader = open(self.target.temp_path, "rb")  # noqa: SIM115 - handed to the caller
        reader.seek(self.offset)
        return reader

    def identity(self, fmt: OutputFormat) -> Identity | None:
        """The data set's identity when it is kept as written and confirms the file meta
        written before it; None when it must be written anew."""
        try:
            assert self.target.file is not None
            self.target.file.flush()
            fd = os.open(self.target.temp_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            found = identity_as_received(fd, self.offset, self.transfer_syntax, fmt)
        finally:
            os.close(fd)
        if found is None or (found.sop_class_uid, found.sop_instance_uid) != (
            self.sop_class, self.sop_instance
        ):
            return None  # e.g. UIDs that differ from the request's: the meta is theirs
        return found

    def discard(self) -> None:
        """Remove the file unless it has been committed (idempotent)."""
        self.target.discard()
