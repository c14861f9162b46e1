"""Per job type, the sums over a fleet's hosts that its cross-host estimates read, kept exact
as hosts change.

A snapshot's index is built from the previous one and the hosts that changed
(`FleetIndex.updated`), in O(changed hosts). The estimates that span hosts (a type's pooled
service time, how far hosts' own times spread around it, the fit of service time on limit:
`FleetIndex.host_service_s`) are ratios of sums over every host; taken afresh, each is O(hosts)
per type at every rebuild, which at 10,000 hosts is milliseconds charged to the first decision
after each one. So each host's terms are kept with its part (`TypeSums.of_host`), and the
fleet's are the previous sums minus the changed hosts' old terms plus their new ones.

Float sums drift under subtraction and depend on their order, so every term is a fixed-point
integer (units of 2**-60): integer sums are exact in any order, and an index kept up to date
holds the very sums of one built afresh. A term loses what lies below 2**-60 (~1e-18), far
below any figure a decision compares.
"""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

#: Fixed-point scale of every summed term.
SCALE = 1 << 60


def fixed(value: float) -> int:
    """`value` in units of 2**-60 (exact for the scaling; rounded below it)."""
    return round(value * SCALE)


class TypeSums(NamedTuple):
    """Σ over hosts (each term fixed-point, `fixed`, except the counts) for one job type; a
    host's own terms are the sums over that host alone."""

    #: Hosts whose VMs of the type ran lately (have a service time of it).
    hosts: int
    #: Σ busy fraction and Σ load (jobs/s) over those VMs: the pooled service time's parts.
    busy: int
    load: int
    #: Σ own service time and its square over the hosts (the spread's deviations).
    own: int
    own_sq: int
    #: The scatter of VMs around their host's mean (`HostPart.of`): Σ, and its degrees of
    #: freedom (VMs - 1 per host with two or more).
    within: int
    dof: int
    #: Weighted least squares of y = log(own) on x = log(limit), weight w = the host's load of
    #: the type, over hosts with a limit: Σw, Σwx, Σwy, Σwx², Σwxy.
    fit_w: int
    fit_wx: int
    fit_wy: int
    fit_wxx: int
    fit_wxy: int

    @classmethod
    def of_host(
        cls,
        busy: float,
        load: float,
        within: float,
        dof: int,
        limit_ops_per_s: float | None,
    ) -> TypeSums:
        """One host's terms for a type its VMs ran: Σ busy and Σ load over them (load > 0),
        the scatter around their mean, and the host's limit."""
        own = busy / load
        fit: tuple[int, ...] = (0, 0, 0, 0, 0)
        # A time that underflowed to 0 (absurd inputs) has no logarithm: it stays out of the fit.
        if limit_ops_per_s is not None and limit_ops_per_s > 0 and own > 0:
            x, y = math.log(limit_ops_per_s), math.log(own)
            fit = tuple(map(fixed, (load, load * x, load * y, load * x * x, load * x * y)))
        return cls(
            1, fixed(busy), fixed(load), fixed(own), fixed(own * own), fixed(within), dof, *fit
        )

    def plus(self, other: TypeSums) -> TypeSums:
        return TypeSums._make(map(operator.add, self, other))

    def minus(self, other: TypeSums) -> TypeSums:
        return TypeSums._make(map(operator.sub, self, other))

    @property
    def pooled_service_s(self) -> float:
        """Σ busy / Σ load: the mean service time of all the type's jobs in the window (a
        ratio of sums, so a VM that ran one odd job does not skew it)."""
        return self.busy / self.load

    def spread(self, noise: int, window_s: float) -> tuple[float, float]:
        """(spread, cv²) of hosts' own service times around the pooled one, beyond what noise
        explains (`FleetIndex.host_service_s`). `noise` is Σ over the hosts of 1 / max(1, jobs
        in the window), fixed-point (`noise_term`)."""
        # Σ load x dev² x window = Σ n x dev², and n x dev² estimates cv² per VM.
        cv2 = self.within / SCALE * window_s / self.dof if self.dof else 1.0
        pooled = self.pooled_service_s
        # Σ (own / pooled - 1)² = Σ own² / pooled² - 2 Σ own / pooled + hosts.
        deviations = self.own_sq / SCALE / pooled**2 - 2 * self.own / SCALE / pooled + self.hosts
        return max(0.0, (deviations - cv2 * noise / SCALE) / self.hosts), cv2

    def limit_fit(self) -> tuple[float, float]:
        """(slope, centre) of log service time on log limit (centre: the weighted mean log
        limit); (0, 0) with no limit known, slope 0 where the limits are alike."""
        if self.fit_w <= 0:
            return 0.0, 0.0
        w, wx = self.fit_w, self.fit_wx
        # In integers, exactly: W Σwx² - (Σwx)² and W Σwxy - Σwx Σwy (both x SCALE²).
        sxx = w * self.fit_wxx - wx * wx
        sxy = w * self.fit_wxy - wx * self.fit_wy
        # Limits alike to within float noise (a weighted variance of log limit below 1e-12).
        slope = sxy / sxx if sxx > 1e-12 * w * w else 0.0
        return slope, wx / w


#: The sums over no host.
NO_SUMS = TypeSums(*(0,) * len(TypeSums._fields))


def noise_term(load_jobs_per_s: float, window_s: float) -> int:
    """One host's share of the noise sum: 1 / max(1, its jobs of the type in the window)."""
    return fixed(1.0 / max(1.0, load_jobs_per_s * window_s))
