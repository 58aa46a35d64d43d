"""The run services, one module per thing they change; import from the module that holds a name."""
