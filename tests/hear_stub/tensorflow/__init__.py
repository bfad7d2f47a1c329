"""Stand-in ``tensorflow`` for hearvalidator (HEAR 2021 API checker).

hearvalidator imports tensorflow at the top but uses it only when the model under test is a
``tf.Module``; for a torch model it needs the name ``tf.Module`` for one isinstance check. CI installs
hearvalidator with ``--no-deps`` and puts this folder on PYTHONPATH instead of pulling TF in."""


class Module:  # never instantiated: nothing here is a TF model
    pass


def device(name):  # only reached for TF models
    raise RuntimeError("stand-in tensorflow: TF models cannot be validated without the real package")
