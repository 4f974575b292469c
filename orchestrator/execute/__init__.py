"""The only layer that changes hosts: the Ansible inventory and ansible-runner."""
