"""Meta-learning for few-shot scene adaptation: MPN's Meta Prototype Unit (paper Sec. 3.3-3.4, SPEC 3.5).

`core`: Meta-SGD over parameter pytrees (split/merge, adapt, outer and meta losses, the Finetune
baseline). `step`: the pure, jitted outer step over (theta, alpha).
"""
