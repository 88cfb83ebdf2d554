#!/usr/bin/env python3
"""Writes the drill state machine of template.yaml out for the checkers that want it alone.

    extract_definition.py asl  [TEMPLATE]   # the definition as JSON (asl-validator, moto)
    extract_definition.py cfn  [TEMPLATE]   # a plain CloudFormation template holding only an
                                            # AWS::StepFunctions::StateMachine with it, so that
                                            # cfn-lint's state machine rules (E3601) apply: they
                                            # do not see through the SAM resource

`${RollbackFunctionArn}` is replaced by a Lambda ARN of the right shape (asl) or left for
DefinitionSubstitutions (cfn). Needs only PyYAML (the CloudFormation tags elsewhere in the
template are read as plain values; the definition has none).
"""
import json
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:ecs-rollback"


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    return {suffix: loader.construct_mapping(node)}


_Loader.add_multi_constructor("!", _tag)


def definition(path):
    with open(path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=_Loader)
    return template["Resources"]["DrillStateMachine"]["Properties"]["Definition"]


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "asl"
    path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "template.yaml")
    d = definition(path)
    if mode == "asl":
        print(json.dumps(d, indent=1).replace("${RollbackFunctionArn}", FUNCTION_ARN))
    elif mode == "cfn":
        print(json.dumps({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "DrillStateMachine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {
                        "StateMachineType": "STANDARD",
                        "RoleArn": "arn:aws:iam::123456789012:role/ecs-rollback-drill",
                        "Definition": d,
                        "DefinitionSubstitutions": {"RollbackFunctionArn": FUNCTION_ARN},
                    },
                }
            },
        }, indent=1))
    else:
        sys.exit("usage: extract_definition.py asl|cfn [TEMPLATE]")


if __name__ == "__main__":
    main()
