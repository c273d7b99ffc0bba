# Without this, Terraform would look for hashicorp/openstack for this module.
terraform {
  required_providers {
    openstack = {
      source = "terraform-provider-openstack/openstack"
    }
  }
}
