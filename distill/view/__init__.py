"""``distill view``: a local web page to watch a run, browse what was kept and dropped, label
pairs and judge blind sheets (see :mod:`distill.view.app`)."""
