"""NodCombinePipeline: nod differences to calibrated 1-D spectra."""

import contextlib
import gc
import logging
from pathlib import Path
from typing import ClassVar

from jwst.datamodels import ModelContainer
from jwst.stpipe import Pipeline

from nodcombine.errors import RefusedError
from nodcombine.extract_1d.step import OptimalExtract1dStep
from nodcombine.lazyvisit import LazyVisit, release_freed_memory
from nodcombine.modelio import NotOpenedHere, open_visit
from nodcombine.nod_diff.step import NodDiffStep
from nodcombine.parallel import core_count, source_pool
from nodcombine.parrefs import override_parameters
from nodcombine.pipelines import families
from nodcombine.pipelines.families import (
    family_visits,
    merged_spectra,
    planned_in,
    worker_tasks,
)
from nodcombine.pipelines.figures import save_visit_figures
from nodcombine.pipelines.partworkers import PartTask, reduce_part, replay
from nodcombine.pipelines.products import (
    per_source_products,
    plan_products,
    product_name,
    product_stem,
    source_summary,
    x1d_suffix,
)
from nodcombine.pipelines.visitrecord import RECORD_SUFFIX, VisitRecord, preflight, save_atomically
from nodcombine.plotting import require_matplotlib
from nodcombine.rectify.step import RectifyStep
from nodcombine.stepbase import NodcombineMixin
from nodcombine.trace_fit.step import TraceFitStep
from nodcombine.visit import group_by_source, group_families

__all__ = ["NodCombinePipeline", "parse_part"]

log = logging.getLogger(__name__)

#: parts of a MOS visit whose slits are opened together (`LazyVisit.load`)
PARTS_PER_OPEN = 5


class NodCombinePipeline(NodcombineMixin, Pipeline):
    """``nod_diff → trace_fit → rectify → optimal_extract_1d`` on one nodded visit.

    Saves, per source, an ``_s2d`` (the rectified slit) and an ``_x1d`` (its
    spectrum) named like ``calwebb_spec3`` products
    (``<product>_s000000933_s2d.fits``), and returns the ``_x1d`` of all sources.
    """

    class_alias = "nodcombine"

    spec = """
    save_sources = boolean(default=True)  # with save_results: write an _s2d and _x1d per source
    save_plots = boolean(default=False)  # write per source <stem>_nod.png, _s2d.png, _x1d.png into output_dir (needs matplotlib)
    part = string(default="")  # K/N: only the K-th of N parts of a MOS visit's source families (nodcombine batch); empty: the whole visit
    maximum_cores = string(default="1")  # processes reducing the parts of a MOS visit opened part by part: an integer, 'none', 'quarter', 'half' or 'all'; each part's fits then run in its process
    """  # noqa: E501

    step_defs: ClassVar[dict] = {
        "nod_diff": NodDiffStep,
        "trace_fit": TraceFitStep,
        "rectify": RectifyStep,
        "optimal_extract_1d": OptimalExtract1dStep,
    }

    def run(self, *args):
        """`process`, then the visit record's last write (after stpipe saved the ``_x1d``)."""
        self._record, self._written, self._details = None, {}, {}
        self._reasons = {name: {} for name in self.step_defs}  # skipped sources, by step
        try:
            result = super().run(*args)
        except RefusedError as err:  # e.g. inputs nod_diff found already background-subtracted
            if self._record is not None:
                self._record.refused(str(err))
            raise
        if self._record is not None:
            reasons = {}
            for name in reversed(tuple(self.step_defs)):  # the first step's reason wins
                reasons.update(self._reasons[name])
            # extraction names a source by its slit (``slit <name>``)
            extracted = self._reasons["optimal_extract_1d"]
            for label in self._record.sources:
                slit = label.split("/")[-2]
                if label not in reasons and f"slit {slit}" in extracted:
                    reasons[label] = extracted[f"slit {slit}"]
            self._record.finish(self._written, reasons, self._details)
            log.info("visit record %s", self._record.path)
        return result

    def process(self, input_data):
        """Run the chain.

        Parameters
        ----------
        input_data : str, list or ModelContainer
            A spec3 association or the ``_cal`` products of one visit.

        Returns
        -------
        MultiSpecModel or None
            One spectrum per source (of the part, with ``part``); None for a
            part beyond the visit's parts.
        """
        for step in (self, *(getattr(self, name) for name in self.step_defs)):
            step.check_parameters()  # all refused before any step works
        # a visit that may be cut into parts is opened part by part: its index
        # now, each part's slits when the part is reduced
        lazy = LazyVisit.open(input_data) if self._by_family() else None
        visit = lazy.index if lazy is not None else open_visit(input_data)
        if visit is None:  # models: copied, never modified
            visit = self.prepare_output(input_data)
        override = self.optimal_extract_1d.override_extract1d
        if override and isinstance(visit, ModelContainer) and len(visit):
            override_parameters(override, visit[0])  # refused before any work
        product = product_name(visit) if isinstance(visit, ModelContainer) else "nodcombine"
        whole, visit = visit, self._selected_part(visit)
        plan = None
        if self.save_results and self.save_sources and isinstance(visit, ModelContainer):
            output_dir = Path(self.output_dir or ".")
            plan = preflight(product, whole, output_dir)  # names unique in the whole visit
            if visit is not whole:
                plan = planned_in(plan, visit)
            inputs = [model.meta.filename for model in visit]
            # a box run keeps its own record beside the optimal run's
            box = "" if x1d_suffix(self.optimal_extract_1d) == "x1d" else "_box"
            record = output_dir / f"{product}{box}{RECORD_SUFFIX}"
            self._record = VisitRecord(record, plan, inputs)
            self._record.started()
        if visit is None:  # a part beyond the visit's: nothing to reduce, nothing written
            log.info("part %s: the visit has fewer parts; nothing to reduce", self.part)
            return None
        with _imports_frozen():
            try:
                spectra = self._reduce_parts(visit, plan, product, lazy)
            except NotOpenedHere as err:
                # bad input the index did not show (a corrupt slit tree): the
                # whole visit again, opened as stdatamodels opens it, with its
                # messages; every product written so far is written again
                log.warning("a part of the visit did not open (%s); opening it whole", err)
                self._written, self._details = {}, {}
                self._reasons = {name: {} for name in self.step_defs}
                visit = self._selected_part(open_visit(input_data))
                spectra = self._reduce_parts(visit, plan, product, None)
        return merged_spectra(spectra)

    def _reduce_parts(self, visit, plan, product, lazy):
        """The chain on each part of the visit; with ``lazy``, its slits opened when needed.

        Opening costs a fixed part per exposure (its tree's header, the first
        copy of the transform chain) besides each slit's own: in this process
        `PARTS_PER_OPEN` parts are opened together, so memory stays bounded
        by that many parts and opening costs about what the whole open costs.
        With ``maximum_cores`` above 1 the families are shared out evenly among
        worker processes, each opening its own parts
        (`nodcombine.pipelines.partworkers`).
        """
        per_open = families.FAMILIES_PER_PART * PARTS_PER_OPEN
        workers = core_count(self.maximum_cores) if lazy and self._by_family() else 1
        tasks = worker_tasks(visit, workers, per_open) if workers > 1 else []
        if len(tasks) > 1:
            with self._tallies(visit, [part for task in tasks for part in task]):
                return self._reduce_in_workers(tasks, plan, product, lazy, workers)
        parts = family_visits(visit) if self._by_family() else [visit]
        with self._tallies(visit, parts), self._workers(parts):
            if lazy is None:  # each part's products are written, and let go, before the next
                return [self._reduce(part, plan, product) for part in parts]
            spectra = []
            for chunk in family_visits(visit, per_part=per_open) if len(parts) > 1 else [visit]:
                opened = lazy.load(chunk)
                for part in family_visits(opened) if len(parts) > 1 else [opened]:
                    spectra.append(self._reduce(part, plan, product))
                del opened, part
                gc.collect()
                release_freed_memory()
            return spectra

    def _reduce_in_workers(self, tasks, plan, product, lazy, workers):
        """Tasks of parts reduced in worker processes; results recorded in the order of the parts.

        Each task's parts are opened together in its worker (`worker_tasks`).
        """
        parameters = self.get_pars()
        tasks = [
            PartTask(
                parameters,
                lazy.input_data,
                lazy.files,
                [lazy.positions(part) for part in parts],
                plan,
                product,
            )
            for parts in tasks
        ]
        n_parts = sum(len(task.parts) for task in tasks)
        log.info("reducing %d parts in %d worker processes", n_parts, min(workers, len(tasks)))
        with source_pool(workers, len(tasks)) as pool:
            futures = [pool.submit(reduce_part, task) for task in tasks]
            return [spectra for future in futures for spectra in replay(future.result(), self)]

    def _selected_part(self, visit):
        """The visit, or with ``part=K/N`` its K-th part (None when it has fewer than K).

        The families of sources are shared out in order among N parts
        (`family_visits`); a visit that cannot be cut is all in part 1.
        """
        if not self.part:
            return visit
        k, n = parse_part(self.part)
        per_part = -(-len(group_families(group_by_source(visit)[0])) // n)  # ceil
        parts = family_visits(visit, per_part=per_part)
        log.info("part %d of %d: %d part(s) of the visit's source families", k, n, len(parts))
        return parts[k - 1] if k <= len(parts) else None

    @contextlib.contextmanager
    def _workers(self, parts):
        """trace_fit's worker processes, started once for all the parts of the visit."""
        if len(parts) == 1:
            yield
            return
        n_groups = sum(len(group_by_source(part)[0]) for part in parts)
        with source_pool(self.trace_fit.maximum_cores, n_groups) as pool:
            self.trace_fit.shared_pool = pool
            try:
                yield
            finally:
                self.trace_fit.shared_pool = None

    @contextlib.contextmanager
    def _tallies(self, visit, parts):
        """Progress and summaries over the whole visit when it is reduced family by family."""
        if len(parts) == 1:
            yield
            return
        n_groups = len(group_by_source(visit)[0])
        n_families = sum(len(group_families(group_by_source(part)[0])) for part in parts)
        totals = {"trace_fit": (n_families, "sources")}  # a family is fitted at once
        totals["optimal_extract_1d"] = (n_groups, "slits")
        steps = [getattr(self, name) for name in self.step_defs]
        for step in steps:
            step.start_tally(*totals.get(step.class_alias, (n_groups, "sources")))
        try:
            yield
        finally:
            for step in steps:
                step.end_tally()

    def _by_family(self):
        """Whether the visit may be cut into families: not when a step saves its own products.

        A step with ``save_results`` writes one product per input exposure;
        run per family, each family would replace the last one's.
        """
        return not any(getattr(self, name).save_results for name in self.step_defs)

    def _reduce(self, visit, plan, product):
        """The chain on a visit or one family of it; its products saved. Returns the spectra."""
        nod = self.nod_diff.run(visit)
        trace = self.trace_fit.run(nod)
        del nod
        s2d = self.rectify.run(trace)
        x1d = self.optimal_extract_1d.run(s2d)
        for name in self.step_defs:
            self._reasons[name].update(getattr(self, name).skip_reasons)
        if plan is not None:
            self._save_sources(plan, s2d, x1d)
        if self.save_plots and isinstance(visit, ModelContainer):
            part_plan = planned_in(plan, visit) if plan is not None else None
            self._save_plots(part_plan, product, visit, trace, s2d, x1d)
        return x1d

    def check_parameters(self):
        """Refuse non-finite numbers, a malformed ``part``, ``save_plots`` without matplotlib."""
        super().check_parameters()
        if self.part:
            try:
                parse_part(self.part)
            except ValueError as err:
                raise RefusedError(self.class_alias, "part", str(err)) from err
        if self.save_plots:
            try:
                require_matplotlib()
            except ImportError as err:
                raise RefusedError(self.class_alias, "save_plots", str(err)) from err

    def _save_plots(self, plan, product, visit, trace, s2d, x1d):
        """Each source's figures, named like its products (planned here without save_results)."""
        if plan is None:
            plan = plan_products(product, group_by_source(visit)[0])
        window = self.optimal_extract_1d.window
        suffix = x1d_suffix(self.optimal_extract_1d)
        save_visit_figures(
            plan, trace, s2d, x1d, self.output_dir or ".", window=window, x1d_suffix=suffix
        )

    def _save_sources(self, plan, s2d, x1d):
        labels = {planned.stem: planned.label for planned in plan}
        suffix = x1d_suffix(self.optimal_extract_1d)
        for name, model in per_source_products(plan, s2d, x1d, x1d_suffix=suffix):
            path = Path(self.output_dir or ".") / f"{name}.fits"
            save_atomically(model, path)
            label = labels[product_stem(name)]
            self._written.setdefault(label, []).append(path.name)
            self._details.setdefault(label, {}).update(source_summary(model))
            log.info("saved %s", path)

    def default_suffix(self):
        """Suffix of the returned product: ``x1d``, ``box_x1d`` for box extraction."""
        return x1d_suffix(self.optimal_extract_1d)


def parse_part(text):
    """``(K, N)`` of a ``part`` parameter ``"K/N"``, 1 <= K <= N.

    Raises
    ------
    ValueError
        For anything else, naming the value.
    """
    try:
        k, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise ValueError(f"is {text!r}; give K/N with 1 <= K <= N, e.g. 2/5")
    return k, n


@contextlib.contextmanager
def _imports_frozen():
    """Leave the objects that exist before the run out of its garbage collections.

    stpipe collects garbage at the start of every step run.  With jwst imported
    each collection traverses some 140,000 long-lived objects (modules, classes,
    schemas) for 0.1 s, a third of the work on a one-source visit.  Frozen
    (`gc.freeze`) for the duration of the run, they are skipped; they are
    unfrozen at its end, so nothing is kept alive by it.  A caller that froze
    objects itself is left alone.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
