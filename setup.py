"""C parts of the package's hot paths, built when a C compiler and the Python headers are
there. Each is optional: without it the package runs the same code paths in Python (see
``looper_pipelines/logs/writer.py`` and ``looper_pipelines/serving/compiled.py``)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # LogStore's default-durability append
        Extension(
            "looper_pipelines.logs._append",
            sources=["looper_pipelines/logs/_append.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        # the common case of the SDK's feature validation and encoding
        Extension(
            "looper_pipelines.client._features",
            sources=["looper_pipelines/client/_features.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
        # one-row calls into compiled model libraries, without ctypes
        Extension(
            "looper_pipelines.serving._rowcall",
            sources=["looper_pipelines/serving/_rowcall.c"],
            extra_compile_args=["-O2"],
            optional=True,
        ),
    ]
)
