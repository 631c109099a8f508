"""How much human time an incident bundle asks for, and why.

The estimate counts what a human would have to read and check, not the traffic
in the window: a busy healthy cloud logs thousands of requests and needs nobody.
Every bundle states the inputs and the formula (docs/collect.md explains it):

    minutes = 12 × new error signatures            (never seen in the baseline: read, understand)
            +  4 × known error signatures          (seen before: recognise, confirm)
            +  8 × (services involved − 1)         (each further service's logs)
            + 12 × (hosts involved − 1)            (each further host: log in, compare)
            +  ½ × linked ids (at most 40 counted) (follow the requests and resources)
            + 15 × records in disagreement         (the database and the logs disagree)

The size is ``none`` when there is nothing to look at (no error line and no id
of the event in the window), ``small`` under 30 minutes, ``medium`` under two
hours, ``large`` beyond; the range is half to twice the figure, because it is a
first guess a human refines, not a promise.
"""

FORMULA = ("12*new_error_signatures + 4*known_error_signatures + 8*(services-1) "
           "+ 12*(hosts-1) + 0.5*min(linked_ids, 40) + 15*disagreements")
SMALL, MEDIUM = 30, 120


def estimate(new_error_signatures, known_error_signatures, services, hosts, linked_ids,
             disagreements, nothing=False):
    inputs = {"new_error_signatures": new_error_signatures,
              "known_error_signatures": known_error_signatures, "services": services,
              "hosts": hosts, "linked_ids": linked_ids, "disagreements": disagreements}
    if nothing:
        return {"size": "none", "minutes": 0, "range_minutes": [0, 0], "inputs": inputs,
                "formula": FORMULA, "why": "nothing to look at: no error, no id of the event "
                                           "in the window"}
    minutes = (12 * new_error_signatures + 4 * known_error_signatures
               + 8 * max(services - 1, 0) + 12 * max(hosts - 1, 0)
               + 0.5 * min(linked_ids, 40) + 15 * disagreements)
    minutes = round(minutes)
    size = "small" if minutes < SMALL else "medium" if minutes < MEDIUM else "large"
    return {"size": size, "minutes": minutes,
            "range_minutes": [max(1, round(minutes / 2)), max(1, minutes * 2)],
            "inputs": inputs, "formula": FORMULA, "why": describe(inputs)}


def describe(inputs):
    words = [("new_error_signatures", "new error signature", "new error signatures"),
             ("known_error_signatures", "known error signature", "known error signatures"),
             ("services", "service", "services"), ("hosts", "host", "hosts"),
             ("linked_ids", "linked id", "linked ids"),
             ("disagreements", "record in disagreement", "records in disagreement")]
    return ", ".join(f"{inputs[k]} {one if inputs[k] == 1 else many}" for k, one, many in words)
