# A python function: returns what it was given, with a word about where it ran.
import platform


def handler(params, context):
    print('echo called')  # goes to the call's log, not to its result
    return {'echo': params, 'function': context.function_name, 'python': platform.python_version()}
